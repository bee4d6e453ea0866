package natlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// reuse sets SO_REUSEADDR and SO_REUSEPORT, as hole punching does.
func reuse(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// udpReflector answers every datagram with the sender's address as text.
func udpReflector(t *testing.T, h *Host, addr string) net.PacketConn {
	t.Helper()
	pc, err := h.Net().ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if string(buf[:n]) == "probe" {
				_, _ = pc.WriteTo([]byte(from.String()), from)
			}
		}
	}()
	return pc
}

// tcpReflector accepts connections and writes the remote address.
func tcpReflector(t *testing.T, h *Host, addr string) {
	t.Helper()
	ln, err := h.Net().Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(c.RemoteAddr().String()))
			c.Close()
		}
	}()
}

// udpAsk sends "probe" from pc to dst and returns the address the reflector saw.
func udpAsk(pc net.PacketConn, dst string) (netip.AddrPort, error) {
	ua, err := net.ResolveUDPAddr("udp", dst)
	if err != nil {
		return netip.AddrPort{}, err
	}
	buf := make([]byte, 1500)
	for try := 0; try < 3; try++ {
		if _, err := pc.WriteTo([]byte("probe"), ua); err != nil {
			return netip.AddrPort{}, err
		}
		_ = pc.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		if from.String() != ua.String() {
			continue
		}
		return netip.ParseAddrPort(string(buf[:n]))
	}
	return netip.AddrPort{}, fmt.Errorf("no reply from %s", dst)
}

// udpReaches reports whether a datagram from src to dst arrives on pc.
func udpReaches(src net.PacketConn, dst netip.AddrPort, pc net.PacketConn) bool {
	msg := fmt.Sprintf("hello-%d", time.Now().UnixNano())
	buf := make([]byte, 1500)
	for try := 0; try < 3; try++ {
		_, _ = src.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(dst))
		_ = pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			if string(buf[:n]) == msg {
				return true
			}
		}
	}
	return false
}

// tcpAsk connects from local port lport to dst and returns the address seen.
// The connection's socket stays open until the test ends, keeping the mapping.
func tcpAsk(t *testing.T, h *Host, lport int, dst string) (netip.AddrPort, error) {
	var c net.Conn
	err := h.Do(func() error {
		d := net.Dialer{Control: reuse, Timeout: time.Second, LocalAddr: &net.TCPAddr{Port: lport}}
		var err error
		c, err = d.Dial("tcp", dst)
		return err
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.ParseAddrPort(string(buf[:n]))
}

// tcpReaches reports whether host `from`, dialing from local address src,
// gets through to mapping dst (where a listener waits).
func tcpReaches(from *Host, src string, dst netip.AddrPort) (bool, error) {
	var c net.Conn
	err := from.Do(func() error {
		la, err := net.ResolveTCPAddr("tcp", src)
		if err != nil {
			return err
		}
		d := net.Dialer{Control: reuse, Timeout: 700 * time.Millisecond, LocalAddr: la}
		c, err = d.Dial("tcp", dst.String())
		return err
	})
	if err == nil {
		c.Close()
		return true, nil
	}
	var ne net.Error
	if errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &ne) && ne.Timeout()) {
		return false, nil
	}
	return false, err
}

func mappingClass(m1, m2, m3 netip.AddrPort) Class {
	switch {
	case m1 == m2 && m1 == m3:
		return EndpointIndependent
	case m1 == m3 && m1 != m2:
		return AddressDependent
	default:
		return AddressAndPortDependent
	}
}

func filteringClass(sameAddrOtherPort, otherAddr bool) Class {
	switch {
	case sameAddrOtherPort && otherAddr:
		return EndpointIndependent
	case sameAddrOtherPort:
		return AddressDependent
	default:
		return AddressAndPortDependent
	}
}

func joinHostPort(a netip.Addr, port int) string {
	return netip.AddrPortFrom(a, uint16(port)).String()
}

func hasAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
