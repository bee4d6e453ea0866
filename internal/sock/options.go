package sock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// Options are socket options for Listen, ListenPacket and Dial. The zero
// value is a plain socket, as package net makes it.
type Options struct {
	// ReuseAddr sets SO_REUSEADDR: a listener may bind a port that still has
	// connections in TIME_WAIT, and (with ReusePort) a dial may leave from a
	// port a listener holds.
	ReuseAddr bool
	// ReusePort sets SO_REUSEPORT where the platform has it (Linux, macOS,
	// BSD): several sockets of this user share one address and port. That is
	// how a hole punch dials from the node listener's port. On Windows it
	// is ErrNoReusePort.
	ReusePort bool
	// Local is the local address and port a Dial leaves from; the zero
	// value lets the kernel choose.
	Local netip.AddrPort
	// RecvBuffer and SendBuffer set SO_RCVBUF and SO_SNDBUF in bytes when
	// positive (the kernel may cap them); zero keeps the system default.
	RecvBuffer, SendBuffer int
	// KeepAlive is the TCP keep-alive period for Dial and accepted
	// connections: zero means Go's default (15 s), negative turns it off.
	KeepAlive time.Duration
}

// ErrNoReusePort is returned for ReusePort on a platform without
// SO_REUSEPORT.
var ErrNoReusePort = errors.New("sock: SO_REUSEPORT is not available on this platform")

func (o Options) control(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) { serr = setOptions(fd, o) })
	if err != nil {
		return fmt.Errorf("sock: socket control: %w", err)
	}
	return serr
}

func (o Options) listenConfig() net.ListenConfig {
	return net.ListenConfig{Control: o.control, KeepAlive: o.KeepAlive}
}

// Listen opens a stream listener with options, in n's network (inside a lab
// namespace for a lab host's Net).
func Listen(ctx context.Context, n Net, network, address string, o Options) (ln net.Listener, err error) {
	err = Do(n, func() error {
		lc := o.listenConfig()
		ln, err = lc.Listen(ctx, network, address)
		return err
	})
	return ln, err
}

// ListenPacket opens a datagram socket with options, in n's network.
func ListenPacket(ctx context.Context, n Net, network, address string, o Options) (pc net.PacketConn, err error) {
	err = Do(n, func() error {
		lc := o.listenConfig()
		pc, err = lc.ListenPacket(ctx, network, address)
		return err
	})
	return pc, err
}

// Dial connects with options (a chosen local port, port sharing), in n's
// network. address must be an IP literal and port.
func Dial(ctx context.Context, n Net, network, address string, o Options) (c net.Conn, err error) {
	d := net.Dialer{Control: o.control, KeepAlive: o.KeepAlive}
	if o.Local.IsValid() {
		switch network {
		case "tcp", "tcp4", "tcp6":
			d.LocalAddr = net.TCPAddrFromAddrPort(o.Local)
		case "udp", "udp4", "udp6":
			d.LocalAddr = net.UDPAddrFromAddrPort(o.Local)
		default:
			return nil, fmt.Errorf("sock: dial %s: a local address needs tcp or udp", network)
		}
	}
	err = Do(n, func() error {
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}
