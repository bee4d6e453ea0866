package main

import (
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

// turndLoad keeps turnd lightly busy until stop closes: Binding requests
// over UDP, TCP connections that send one and stay open, and unauthenticated
// Allocate requests (each answered 401).
func turndLoad(addr string, stop <-chan struct{}, wg *sync.WaitGroup) {
	bind, _ := stun.Build(stun.TransactionID, stun.BindingRequest)
	alloc, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest))
	for range 2 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				_, _ = c.Write(bind.Raw)
				if held = append(held, c); len(held) > 20 {
					held[0].Close()
					held = held[1:]
				}
			}
		}()
		go func() {
			defer wg.Done()
			c, err := net.Dial("udp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = c.Write(bind.Raw)
				_, _ = c.Write(alloc.Raw)
				time.Sleep(time.Millisecond)
			}
		}()
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
