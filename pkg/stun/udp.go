package stun

import (
	"errors"
	"net"
	"time"
)

// serveUDP answers requests read from socket k of address index at of f.
// Change requests are answered from socket k of the changed address.
func (s *Server) serveUDP(f *family, at, k int, c *net.UDPConn) {
	w := newWorker()
	buf := make([]byte, 2048)
	st := site{addrs: &f.addrs, hasAlt: f.hasAlt, at: at, family: f.name}
	latency := s.m.latency.WithLabelValues("udp")
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		start := time.Now()
		src = netAddrPortUnmap(src)
		if !s.lim.allow(src.Addr(), start) {
			s.m.rateLimited.WithLabelValues("udp").Inc()
			continue
		}
		r := s.handle(w, buf[:n], src, st, false)
		s.count(r, "udp", f.name)
		if r.out == outMalformed {
			continue
		}
		out := f.udp[r.via]
		if _, err := out[k%len(out)].WriteToUDPAddrPort(r.resp, src); err != nil {
			s.m.errors.WithLabelValues("send").Inc()
		}
		latency.Observe(time.Since(start).Seconds())
	}
}
