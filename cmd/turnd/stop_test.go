package main

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v2"

	"github.com/p2pd-go/p2pd/internal/testload"
)

// turndLoad keeps turnd lightly busy until stop closes: Binding requests
// over UDP, TCP connections that send one and stay open, and unauthenticated
// Allocate requests (each answered 401).
func turndLoad(addr string, stop <-chan struct{}, wg *sync.WaitGroup) {
	bind, _ := stun.Build(stun.TransactionID, stun.BindingRequest)
	alloc, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest))
	for range 2 {
		testload.TCP(addr, func(int) []byte { return bind.Raw }, stop, wg)
		testload.UDP(addr, [][]byte{bind.Raw, alloc.Raw}, stop, wg)
	}
}

// Every stop under light load ends turnd within its drain time plus a
// margin that tells a hang apart (not a timing assertion).
func TestStopsUnderLoadEveryTime(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and stops the binary many times")
	}
	bin := buildTurnd(t)
	const drain = time.Second
	for i := range 15 {
		srv := startTurnd(t, bin, "--drain", drain.String(), "--tcp-idle", "1m")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		turndLoad(fmt.Sprintf("127.0.0.1:%d", srv.port), stop, &wg)
		time.Sleep(time.Duration(20+i%5*15) * time.Millisecond) // vary where the stop lands
		if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("stop %d: exit %v", i, err)
			}
		case <-time.After(drain + 10*time.Second):
			_ = srv.cmd.Process.Signal(syscall.SIGQUIT) // its goroutine dump shows where it hangs
			<-done
			t.Fatalf("stop %d: turnd still running %v after SIGTERM:\n%s", i, drain+10*time.Second, srv.out.String())
		}
		close(stop)
		wg.Wait()
	}
}
