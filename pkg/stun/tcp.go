package stun

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"
)

// maxTCPMessage bounds one framed request; Binding requests are small.
const maxTCPMessage = 1024

func (s *Server) acceptTCP(ctx context.Context, ln *siteListener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			s.m.errors.WithLabelValues("accept").Inc()
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return
			}
			continue
		}
		select {
		case s.tcpSem <- struct{}{}:
		default:
			s.m.errors.WithLabelValues("tcp_limit").Inc()
			_ = c.Close()
			continue
		}
		s.mu.Lock()
		if s.closing { // accepted while Close ran: Close has closed the others already
			s.mu.Unlock()
			_ = c.Close()
			<-s.tcpSem
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.m.tcpConns.Inc()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveTCP(c, ln)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			_ = c.Close()
			s.m.tcpConns.Dec()
			<-s.tcpSem
		}()
	}
}

// serveTCP answers RFC 8489-framed requests on c until the peer closes, stays
// idle for TCPIdle, or sends something that is not a Binding request.
func (s *Server) serveTCP(c net.Conn, ln *siteListener) {
	src := netAddrPortUnmap(c.RemoteAddr().(*net.TCPAddr).AddrPort())
	st := site{addrs: &ln.fam.addrs, hasAlt: ln.fam.hasAlt, at: ln.at, family: ln.fam.name}
	w := newWorker()
	m := s.m.counters("tcp", ln.fam.name)
	rd := bufio.NewReaderSize(c, 2048)
	buf := make([]byte, maxTCPMessage)
	for {
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.TCPIdle))
		if _, err := io.ReadFull(rd, buf[:headerSize]); err != nil {
			return
		}
		size := int(binary.BigEndian.Uint16(buf[2:4]))
		if headerSize+size > len(buf) || buf[0]&0xC0 != 0 {
			m.malformed.Inc()
			return
		}
		if _, err := io.ReadFull(rd, buf[headerSize:headerSize+size]); err != nil {
			return
		}
		start := time.Now()
		if !s.lim.allow(src.Addr(), start) {
			m.rateLimited.Inc()
			continue
		}
		r := s.handle(w, buf[:headerSize+size], src, st, true)
		m.count(r)
		if r.out == outMalformed {
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(r.resp); err != nil {
			m.send.Inc()
			return
		}
		m.latency.Observe(time.Since(start).Seconds())
	}
}

func netAddrPortUnmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
