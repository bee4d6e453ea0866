package stun

import (
	"errors"
	"net"
	"time"

	"github.com/p2pd-go/p2pd/internal/udpbatch"
)

// yieldAfter is how long a serving goroutine answers without its socket
// running dry before it yields its thread to the kernel's scheduler.
//
// Under pipelined load the socket never runs dry, so the goroutine's thread
// never blocks and the kernel treats it as a CPU hog: it runs until its slice
// ends (1.5 ms on a 2-core machine) and then waits as long for the CPU while
// clients' answers, or their next requests, queue behind it. That made
// stund's p99 latency 1.3-1.7x coturn's, whose threads block between small
// batches. A sched_yield at a batch boundary, once every yieldAfter of
// continuous work, hands the CPU over with nothing of ours half done. A
// goroutine whose socket runs dry sleeps anyway and never yields. 200 us
// halved the pipelined p99 for 4 % of the pipelined requests/s; shorter
// cost closed-loop clients more, longer cut less (the measurements are in
// docs/benchmarks.md, stund section).
const yieldAfter = 200 * time.Microsecond

// udpBatch is the number of datagrams read (recvmmsg) and answered
// (sendmmsg) per system call.
const udpBatch = 32

// serveUDP answers requests read from socket k of address index at of f.
// Answers from the same socket go out in one batch; change requests are
// answered one by one from socket k of the changed address. Nothing here
// allocates per request (udpbatch keeps buffers and addresses in place):
// at 100,000 requests/s even a few dozen bytes each made the garbage
// collector run several times a second, and requests arriving during a
// collection made the p99 latency.
//
// The sockets are outside Go's poller (udpbatch.Detach): with them in it,
// every answer sent woke the poller's thread for the socket's output
// readiness, which nothing waits for.
func (s *Server) serveUDP(f *family, at, k int, bc *udpbatch.Conn) {
	w := newWorker()
	st := site{addrs: &f.addrs, hasAlt: f.hasAlt, at: at, family: f.name}
	m := s.m.counters("udp", f.name)
	in := make([]udpbatch.Msg, udpBatch)
	for i := range in {
		in[i].Buf = make([]byte, 1500)
	}
	out := make([]udpbatch.Msg, 0, udpBatch)
	outBufs := make([][]byte, udpBatch)
	for i := range outBufs {
		outBufs[i] = make([]byte, 0, 256)
	}
	busySince, waits := time.Now(), bc.Waits()
	for {
		n, err := bc.Read(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		start := time.Now()
		out = out[:0]
		answered := 0
		for i := range n {
			if !in[i].Addr.IsValid() {
				continue
			}
			src := netAddrPortUnmap(in[i].Addr)
			if !s.lim.allow(src.Addr(), start) {
				m.rateLimited.Inc()
				continue
			}
			r := s.handle(w, in[i].Buf[:in[i].N], src, st, false)
			m.count(r)
			if r.out == outMalformed {
				continue
			}
			answered++
			if r.via == at {
				j := len(out)
				outBufs[j] = append(outBufs[j][:0], r.resp...)
				out = append(out, udpbatch.Msg{Buf: outBufs[j], Addr: in[i].Addr})
				continue
			}
			other := f.udp[r.via]
			if err := other[k%len(other)].WriteTo(r.resp, in[i].Addr); err != nil {
				m.send.Inc()
			}
		}
		for q := out; len(q) > 0; { // q, not out: out keeps its capacity
			sent, err := bc.Write(q)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					break
				}
				m.send.Inc() // out[0] refused: skip it, send the rest
				sent = 1
			}
			q = q[sent:]
		}
		now := time.Now()
		d := now.Sub(start).Seconds()
		for range answered {
			m.latency.Observe(d)
		}
		if w := bc.Waits(); w != waits {
			busySince, waits = now, w
		} else if now.Sub(busySince) > yieldAfter {
			yieldThread()
			busySince = now
		}
	}
}
