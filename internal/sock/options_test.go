//go:build linux

package sock_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
	"golang.org/x/sys/unix"
)

func TestDialFromListenerPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	share := sock.Options{ReuseAddr: true, ReusePort: true}
	ln, err := sock.Listen(ctx, sock.Host, "tcp4", "127.0.0.1:0", share)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	local := netip.MustParseAddrPort(ln.Addr().String())
	peer, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	t.Run("shared port", func(t *testing.T) {
		o := share
		o.Local = local
		c, err := sock.Dial(ctx, sock.Host, "tcp4", peer.Addr().String(), o)
		if err != nil {
			t.Fatalf("dial from the listener's port: %v", err)
		}
		defer c.Close()
		in, err := peer.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		if got := netip.MustParseAddrPort(in.RemoteAddr().String()); got != local {
			t.Fatalf("peer saw the dial from %v, want the listener's %v", got, local)
		}
	})
	t.Run("without sharing the port is taken", func(t *testing.T) {
		_, err := sock.Dial(ctx, sock.Host, "tcp4", peer.Addr().String(), sock.Options{Local: local})
		if err == nil {
			t.Fatal("a dial from a listener's port without SO_REUSEPORT succeeded")
		}
	})
}

func TestSharedUDPPortAndBuffers(t *testing.T) {
	ctx := context.Background()
	o := sock.Options{ReusePort: true, RecvBuffer: 1 << 20, SendBuffer: 256 << 10}
	a, err := sock.ListenPacket(ctx, sock.Host, "udp4", "127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sock.ListenPacket(ctx, sock.Host, "udp4", a.LocalAddr().String(), o)
	if err != nil {
		t.Fatalf("second socket on the same port with SO_REUSEPORT: %v", err)
	}
	defer b.Close()
	if _, err := sock.ListenPacket(ctx, sock.Host, "udp4", a.LocalAddr().String(), sock.Options{}); err == nil {
		t.Fatal("a plain socket could bind a port held with SO_REUSEPORT")
	}
	raw, err := a.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var rcv int
	_ = raw.Control(func(fd uintptr) { rcv, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	if err != nil {
		t.Fatal(err)
	}
	// Linux doubles the value it was given, capped by net.core.rmem_max.
	if def := defaultRcvBuf(t); rcv <= def {
		t.Fatalf("SO_RCVBUF %d, not above the default %d", rcv, def)
	}
}

func defaultRcvBuf(t *testing.T) int {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, _ := c.(*net.UDPConn).SyscallConn()
	var v int
	_ = raw.Control(func(fd uintptr) { v, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	return v
}
