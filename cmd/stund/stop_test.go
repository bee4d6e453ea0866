package main

import (
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	pstun "github.com/pion/stun/v2"

	"github.com/p2pd-go/p2pd/internal/testload"
)

// stopBound is how long a stopped server may take before it counts as hung.
// stund has no drain; a hang lasts --tcp-idle (a minute here), so the bound
// tells the two apart without being a timing assertion.
const stopBound = 10 * time.Second

// stundLoad keeps stund lightly busy until stop closes: UDP Binding requests
// and TCP connections that send a request and stay open (a connection
// accepted while stund stops is the case that hung).
func stundLoad(addr string, stop <-chan struct{}, wg *sync.WaitGroup) {
	req, _ := pstun.Build(pstun.TransactionID, pstun.BindingRequest)
	for range 3 {
		testload.TCP(addr, func(int) []byte { return req.Raw }, stop, wg)
		testload.UDP(addr, [][]byte{req.Raw}, stop, wg)
	}
}

// Every stop under light load ends the process within stopBound (stund once
// logged "stund stopping" and was still running 5 s after SIGTERM: a TCP
// connection accepted while it closed was never closed).
func TestStopsUnderLoadEveryTime(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and stops the binary many times")
	}
	bin := buildStund(t)
	for i := range 25 {
		s := startStund(t, bin, "--primary-ip4", "127.0.0.1", "--alternate-ip4", "127.0.0.2", "--tcp-idle", "1m", "--rate", "0")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		stundLoad(net.JoinHostPort("127.0.0.1", strconv.Itoa(int(s.port))), stop, &wg)
		time.Sleep(time.Duration(20+i%5*15) * time.Millisecond) // vary where the stop lands
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-s.exited:
			s.exited <- err
			if err != nil {
				t.Fatalf("stop %d: exit %v: %s", i, err, s.stderr)
			}
		case <-time.After(stopBound):
			_ = s.cmd.Process.Signal(syscall.SIGQUIT) // its goroutine dump shows where it hangs
			time.Sleep(time.Second)
			t.Fatalf("stop %d: stund still running %v after SIGTERM: %s", i, stopBound, s.stderr)
		}
		close(stop)
		wg.Wait()
	}
}
