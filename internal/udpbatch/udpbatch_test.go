package udpbatch

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
)

func listen(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("no %s socket on %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrPort(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// TestRoundTrip sends a batch from one socket to another and back: every
// datagram arrives with its bytes and its sender's address, in order.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name, network, addr string
	}{
		{"ipv4", "udp4", "127.0.0.1:0"},
		{"ipv6", "udp6", "[::1]:0"},
		{"dual-stack socket, ipv4 peer", "udp", "0.0.0.0:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := New(listen(t, tc.network, tc.addr), 8)
			peerAddr := "127.0.0.1:0"
			if tc.network == "udp6" {
				peerAddr = "[::1]:0"
			}
			peer := New(listen(t, tc.network, peerAddr), 8)
			to := local(peer)
			if to.Addr().IsUnspecified() {
				to = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), to.Port())
			}
			from := local(a)
			const n = 5
			out := make([]Msg, n)
			for i := range out {
				out[i] = Msg{Buf: []byte(fmt.Sprintf("datagram %d", i)), Addr: to}
			}
			for sent := 0; sent < n; {
				k, err := a.Write(out[sent:])
				if err != nil {
					t.Fatal(err)
				}
				sent += k
			}
			in := make([]Msg, 8)
			for i := range in {
				in[i].Buf = make([]byte, 1500)
			}
			for got := 0; got < n; {
				k, err := peer.Read(in)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range in[:k] {
					if want := fmt.Sprintf("datagram %d", got); string(m.Buf[:m.N]) != want {
						t.Fatalf("datagram %d is %q, want %q", got, m.Buf[:m.N], want)
					}
					if m.Addr.Port() != from.Port() || !m.Addr.Addr().Unmap().IsLoopback() {
						t.Fatalf("datagram %d from %v, want port %d on loopback", got, m.Addr, from.Port())
					}
					got++
				}
			}
			// And back to the address the peer read.
			if _, err := peer.Write([]Msg{{Buf: []byte("back"), Addr: in[0].Addr}}); err != nil {
				t.Fatal(err)
			}
			k, err := a.Read(in[:1])
			if err != nil || k != 1 || !bytes.Equal(in[0].Buf[:in[0].N], []byte("back")) {
				t.Fatalf("answer: %d %q %v", k, in[0].Buf[:in[0].N], err)
			}
		})
	}
}

// TestNoAllocation: reading and writing a batch allocates nothing (the
// point of the package).
func TestNoAllocation(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("batches are recvmmsg/sendmmsg on Linux only")
	}
	for _, detach := range []bool{false, true} {
		t.Run(fmt.Sprintf("detached=%v", detach), func(t *testing.T) {
			open := func() *Conn {
				c := listen(t, "udp4", "127.0.0.1:0")
				if !detach {
					return New(c, 4)
				}
				b, err := Detach(c, 4)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Close() })
				return b
			}
			a, b := open(), open()
			out := []Msg{{Buf: []byte("x"), Addr: local(b)}, {Buf: []byte("y"), Addr: local(b)}}
			in := make([]Msg, 4)
			for i := range in {
				in[i].Buf = make([]byte, 64)
			}
			z, to := []byte("z"), local(b)
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := a.Write(out); err != nil {
					t.Fatal(err)
				}
				if err := a.WriteTo(z, to); err != nil {
					t.Fatal(err)
				}
				for got := 0; got < len(out)+1; {
					k, err := b.Read(in)
					if err != nil {
						t.Fatal(err)
					}
					got += k
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per batch, want 0", allocs)
			}
		})
	}
}

// TestClosed: Read on a closed socket reports net.ErrClosed.
func TestClosed(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	b := New(c, 4)
	c.Close()
	_, err := b.Read(make([]Msg, 1))
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v, want net.ErrClosed", err)
	}
}

func BenchmarkWriteRead(b *testing.B) {
	x := New(listen(b, "udp4", "127.0.0.1:0"), 16)
	y := New(listen(b, "udp4", "127.0.0.1:0"), 16)
	out := make([]Msg, 16)
	for i := range out {
		out[i] = Msg{Buf: make([]byte, 100), Addr: local(y)}
	}
	in := make([]Msg, 16)
	for i := range in {
		in[i].Buf = make([]byte, 1500)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := x.Write(out); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < len(out); {
			k, err := y.Read(in)
			if err != nil {
				b.Fatal(err)
			}
			got += k
		}
	}
}

func local(b *Conn) netip.AddrPort { return b.LocalAddr().(*net.UDPAddr).AddrPort() }
