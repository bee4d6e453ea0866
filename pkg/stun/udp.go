package stun

import (
	"errors"
	"net"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpBatch is the number of datagrams read (recvmmsg) and answered
// (sendmmsg) per system call.
const udpBatch = 32

// batchConn is what ipv4.PacketConn and ipv6.PacketConn have in common.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serveUDP answers requests read from socket k of address index at of f.
// Answers from the same socket go out in one batch; change requests are
// answered one by one from socket k of the changed address.
func (s *Server) serveUDP(f *family, at, k int, c *net.UDPConn) {
	var bc batchConn = ipv4.NewPacketConn(c)
	if f.name == "ipv6" {
		bc = ipv6.NewPacketConn(c)
	}
	w := newWorker()
	st := site{addrs: &f.addrs, hasAlt: f.hasAlt, at: at, family: f.name}
	m := s.m.counters("udp", f.name)
	in := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 1500)}
	}
	out := make([]ipv4.Message, 0, udpBatch)
	outBufs := make([][]byte, udpBatch)
	for i := range outBufs {
		outBufs[i] = make([]byte, 0, 256)
	}
	for {
		n, err := bc.ReadBatch(in, 0)
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
			ua, ok := in[i].Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			src := netAddrPortUnmap(ua.AddrPort())
			if !s.lim.allow(src.Addr(), start) {
				m.rateLimited.Inc()
				continue
			}
			r := s.handle(w, in[i].Buffers[0][:in[i].N], src, st, false)
			m.count(r)
			if r.out == outMalformed {
				continue
			}
			answered++
			if r.via == at {
				j := len(out)
				outBufs[j] = append(outBufs[j][:0], r.resp...)
				out = append(out, ipv4.Message{Buffers: [][]byte{outBufs[j]}, Addr: ua})
				continue
			}
			other := f.udp[r.via]
			if _, err := other[k%len(other)].WriteToUDPAddrPort(r.resp, src); err != nil {
				m.send.Inc()
			}
		}
		for len(out) > 0 {
			sent, err := bc.WriteBatch(out, 0)
			if err != nil {
				for range out {
					m.send.Inc()
				}
				break
			}
			out = out[sent:]
		}
		d := time.Since(start).Seconds()
		for range answered {
			m.latency.Observe(d)
		}
	}
}
