//go:build !linux

package udpbatch

import (
	"errors"
	"fmt"
	"net"
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
