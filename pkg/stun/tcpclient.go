package stun

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
	"github.com/pion/stun/v2"
)

// TCPConn runs Binding transactions one after another over a TCP connection
// with RFC 8489 framing.
type TCPConn struct {
	c       net.Conn
	m       stun.Message
	buf     []byte
	scratch []byte
}

// DialTCP connects to server through n (nil: sock.Host).
func DialTCP(ctx context.Context, n sock.Net, server netip.AddrPort) (*TCPConn, error) {
	return DialTCPWith(ctx, n, server, sock.Options{})
}

// DialTCPWith connects with socket options: from a chosen local port shared
// with a listener (SO_REUSEPORT), the connection learns, and while it stays
// open keeps, the NAT mapping of that port.
func DialTCPWith(ctx context.Context, n sock.Net, server netip.AddrPort, o sock.Options) (*TCPConn, error) {
	if n == nil {
		n = sock.Host
	}
	c, err := sock.Dial(ctx, n, "tcp", server.String(), o)
	if err != nil {
		return nil, fmt.Errorf("stun: dial tcp %s: %w", server, err)
	}
	return newTCPConn(c), nil
}

func newTCPConn(c net.Conn) *TCPConn {
	return &TCPConn{c: c, buf: make([]byte, 0, 1024), scratch: make([]byte, 0, 1024)}
}

// Close closes the connection.
func (t *TCPConn) Close() error { return t.c.Close() }

// Abort closes the connection with a RST (SO_LINGER 0), so no TIME_WAIT
// holds its 4-tuple: a punch port can ask the same server again at once.
func (t *TCPConn) Abort() error {
	if tc, ok := t.c.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	}
	return t.c.Close()
}

// LocalAddr is the connection's local address.
func (t *TCPConn) LocalAddr() netip.AddrPort {
	return netAddrPortUnmap(t.c.LocalAddr().(*net.TCPAddr).AddrPort())
}

// Do sends one request and reads its response. Over TCP the server answers
// change requests with an error, so r.Change should be 0.
func (t *TCPConn) Do(ctx context.Context, r Request) (Response, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(DefaultTimeout)
	}
	_ = t.c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = t.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	key, err := newRequest(&t.m, r)
	if err != nil {
		return Response{}, err
	}
	if _, err := t.c.Write(t.m.Raw); err != nil {
		return Response{}, fmt.Errorf("stun: tcp send: %w", err)
	}
	for {
		b := t.buf[:headerSize]
		if _, err := io.ReadFull(t.c, b); err != nil {
			return Response{}, fmt.Errorf("stun: tcp read: %w", err)
		}
		size := int(binary.BigEndian.Uint16(b[2:4]))
		if size > 2048 {
			return Response{}, fmt.Errorf("stun: tcp response of %d bytes is too long", size)
		}
		b = append(b, make([]byte, size)...)
		if _, err := io.ReadFull(t.c, b[headerSize:]); err != nil {
			return Response{}, fmt.Errorf("stun: tcp read: %w", err)
		}
		t.buf = b[:0]
		resp, got, err := parseResponse(&t.m, b, t.scratch)
		if got != key {
			continue // a stale answer; keep reading
		}
		resp.From = netAddrPortUnmap(t.c.RemoteAddr().(*net.TCPAddr).AddrPort())
		resp.Local = t.LocalAddr()
		return resp, err
	}
}

// BindTCP makes one Binding request over a fresh TCP connection.
func BindTCP(ctx context.Context, n sock.Net, r Request) (Response, error) {
	c, err := DialTCP(ctx, n, r.Server)
	if err != nil {
		return Response{}, err
	}
	defer c.Close()
	return c.Do(ctx, r)
}
