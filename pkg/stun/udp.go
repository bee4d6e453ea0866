package stun

import (
	"errors"
	"net"
	"time"

	"github.com/p2pd-go/p2pd/internal/udpbatch"
)

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
		d := time.Since(start).Seconds()
		for range answered {
			m.latency.Observe(d)
		}
	}
}
