//go:build !linux

package udpbatch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// sys reads and writes one datagram per call here.
type sys struct{}

func (*sys) init(*net.UDPConn, int) {}

// Read reads one datagram into ms[0].
func (b *Conn) Read(ms []Msg) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	n, addr, err := b.c.ReadFromUDPAddrPort(ms[0].Buf)
	if err != nil {
		return 0, wrap("read", err)
	}
	ms[0].N, ms[0].Addr = n, addr
	return 1, nil
}

// Waits is 0 here: Go's poller hides whether a read waited.
func (b *Conn) Waits() uint64 { return 0 }

// Detach is New here: only Linux takes sockets out of Go's poller.
func Detach(c *net.UDPConn, batch int) (*Conn, error) { return New(c, batch), nil }

// Sibling is another Conn on the same socket.
func (b *Conn) Sibling(batch int) *Conn { return New(b.c, batch) }

// Unwatch does nothing here.
func (b *Conn) Unwatch() error { return nil }

// Detached is false here.
func (b *Conn) Detached() bool { return false }

// SetReadDeadline bounds Read's waits.
func (b *Conn) SetReadDeadline(t time.Time) error { return b.c.SetReadDeadline(t) }

// Close closes the socket.
func (b *Conn) Close() error { return b.c.Close() }

// WriteTo sends one datagram, from any goroutine.
func (b *Conn) WriteTo(p []byte, to netip.AddrPort) error {
	if _, err := b.c.WriteToUDPAddrPort(p, to); err != nil {
		return wrap("write", err)
	}
	return nil
}

// Write sends ms one by one; an error is about ms[n].
func (b *Conn) Write(ms []Msg) (int, error) {
	for i := range ms {
		if _, err := b.c.WriteToUDPAddrPort(ms[i].Buf, ms[i].Addr); err != nil {
			return i, wrap("write", err)
		}
	}
	return len(ms), nil
}

func wrap(op string, err error) error {
	if errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("udpbatch: %s: %w", op, net.ErrClosed)
	}
	return fmt.Errorf("udpbatch: %s: %w", op, err)
}
