package turnserver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

// testClock is a clock a test moves by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// channelFrame is ChannelData on channel num carrying data, padded as a
// client may pad it.
func channelFrame(num uint16, data []byte) []byte {
	f := binary.BigEndian.AppendUint16(nil, num)
	f = binary.BigEndian.AppendUint16(f, uint16(len(data)))
	f = append(f, data...)
	for len(f)%4 != 0 {
		f = append(f, 0)
	}
	return f
}

// readFrom reads one datagram from c, failing the test after a bound that
// only catches a broken test.
func readFrom(t *testing.T, c net.PacketConn) ([]byte, net.Addr) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 2048)
	n, from, err := c.ReadFrom(b)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b[:n], from
}

// clientRead reads one datagram on the raw client's socket.
func clientRead(t *testing.T, r *rawClient) []byte {
	t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds a broken test only
	b := make([]byte, 2048)
	n, err := r.conn.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

// nothingQueued asserts that c has no datagram waiting (the caller has
// made sure that anything sent before would have arrived).
func nothingQueued(t *testing.T, c net.PacketConn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now())
	b := make([]byte, 2048)
	if n, from, err := c.ReadFrom(b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %d bytes from %v (err %v), want nothing", n, from, err)
	}
}

// TestChannelShortcut relays ChannelData over a raw client's channel in
// both directions, and checks that turnd's copy of the binding follows
// pion's: it relays while the binding is fresh, hands over to pion once its
// lifetime has passed on turnd's clock, comes back with a ChannelBind
// refresh, and never relays after the allocation is released.
func TestChannelShortcut(t *testing.T) {
	clock := &testClock{now: time.Now()}
	s, _ := testServer(t, func(c *Config) { loopbackAllowed(c); c.Now = clock.Now })
	fast := func() float64 { return metric(t, s.f.m.fast) }
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	pa := peer.LocalAddr().(*net.UDPAddr).AddrPort()

	r := newRawClient(t, "udp", s.UDPAddrs()[0].String(), "alice", "alice-pw")
	res := r.allocate()
	if code := r.code(res); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		t.Fatal(err)
	}
	relay := &net.UDPAddr{IP: relayed.IP, Port: relayed.Port}
	const num = 0x4001
	bind := func() {
		t.Helper()
		if code := r.code(r.peerRequestPort(pa.Addr(), int(pa.Port()), num)); code != 0 {
			t.Fatalf("channel bind: %d", code)
		}
	}
	bind()

	// roundTrip sends data from the client on the channel and an answer
	// back from the peer, checking the bytes each side receives.
	roundTrip := func(t *testing.T, data, answer []byte) {
		t.Helper()
		if _, err := r.conn.Write(channelFrame(num, data)); err != nil {
			t.Fatal(err)
		}
		got, from := readFrom(t, peer)
		if !bytes.Equal(got, data) || from.String() != relay.String() {
			t.Fatalf("peer got %q from %v, want %q from %v", got, from, data, relay)
		}
		if _, err := peer.WriteTo(answer, relay); err != nil {
			t.Fatal(err)
		}
		if got, want := clientRead(t, r), channelFrame(num, answer); !bytes.Equal(got, want) {
			t.Fatalf("client got % x, want % x", got, want)
		}
	}

	t.Run("shortcut relays both ways", func(t *testing.T) {
		before := fast()
		roundTrip(t, []byte("hello"), []byte("world!"))
		roundTrip(t, make([]byte, 1200), bytes.Repeat([]byte{7}, 1199))
		if got := fast() - before; got != 4 {
			t.Fatalf("shortcut relayed %v datagrams, want 4", got)
		}
		// The relay socket went to the poller and out of Go's poller.
		if s.poller != nil {
			s.poller.mu.Lock()
			defer s.poller.mu.Unlock()
			if len(s.poller.conns) != 1 {
				t.Fatalf("%d relay sockets in the poller, want 1", len(s.poller.conns))
			}
			for _, q := range s.poller.conns {
				if bc, ok := q.rc.PacketConn.(*batchConn); !ok || !bc.pc.Load().Detached() {
					t.Errorf("the polled relay socket is still in Go's poller")
				}
			}
		}
	})
	t.Run("peer without a channel reaches pion", func(t *testing.T) {
		// The binding's permission covers the peer's IP, so a second port
		// there may send; pion relays it as a Data indication.
		other, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		for _, data := range []string{"no channel", "still none"} {
			if _, err := other.WriteTo([]byte(data), relay); err != nil {
				t.Fatal(err)
			}
			b := clientRead(t, r)
			m := &stun.Message{Raw: b}
			if err := m.Decode(); err != nil || m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
				t.Fatalf("client got % x (%v), want a Data indication", b, err)
			}
			if v, err := m.Get(stun.AttrData); err != nil || string(v) != data {
				t.Fatalf("Data indication carries %q (%v), want %q", v, err, data)
			}
		}
	})
	t.Run("stale copy leaves relaying to pion", func(t *testing.T) {
		clock.advance(bindTTL)
		before := fast()
		roundTrip(t, []byte("via pion"), []byte("back via pion"))
		if got := fast() - before; got != 0 {
			t.Fatalf("shortcut relayed %v datagrams on a binding past its lifetime", got)
		}
	})
	t.Run("refresh brings the shortcut back", func(t *testing.T) {
		bind()
		before := fast()
		roundTrip(t, []byte("again"), []byte("fast"))
		if got := fast() - before; got != 2 {
			t.Fatalf("shortcut relayed %v datagrams after a refresh, want 2", got)
		}
	})
	t.Run("release ends relaying", func(t *testing.T) {
		if code := r.code(r.request(stun.MethodRefresh, rawAttr{stun.AttrLifetime, []byte{0, 0, 0, 0}})); code != 0 {
			t.Fatalf("release: %d", code)
		}
		before := fast()
		if _, err := r.conn.Write(channelFrame(num, []byte("after release"))); err != nil {
			t.Fatal(err)
		}
		// The server reads a client's datagrams in order and sends what
		// one caused before it reads the next, so once this answer is
		// here a relayed frame would be waiting at the peer.
		if code := r.code(r.request(stun.MethodRefresh, rawAttr{stun.AttrLifetime, []byte{0, 0, 0, 0}})); code != int(stun.CodeAllocMismatch) {
			t.Fatalf("refresh after release: %d, want 437", code)
		}
		nothingQueued(t, peer)
		if got := fast() - before; got != 0 {
			t.Fatalf("shortcut relayed %v datagrams after the release", got)
		}
	})
}

// FuzzChannels feeds arbitrary frames to the binding copy as ChannelBind
// requests, as pion's answers and as client ChannelData: nothing may
// panic, and with no allocation known nothing is relayed.
func FuzzChannels(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	bindReq, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodChannelBind, stun.ClassRequest))
	bindReq.Add(stun.AttrChannelNumber, []byte{0x40, 0x01, 0, 0})
	bindReq.Add(stun.AttrXORPeerAddress, xorPeer(netip.MustParseAddr("127.0.0.1"), 9, bindReq.TransactionID))
	f.Add(bindReq.Raw)
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}
	f.Fuzz(func(t *testing.T, b []byte) {
		fl := fuzzFilter()
		cs := newChannels(&relayGen{f: fl}, fl.m, fl.now)
		ln := &packetConn{f: fl, chans: cs}
		cs.request(ln, src, b, fl.now())
		if isChannelBindAnswer(b) {
			cs.answered(ln, src, b, fl.now())
		}
		if len(b) >= 2 {
			ans := append([]byte(nil), b...)
			binary.BigEndian.PutUint16(ans, typeChannelBindSuccess)
			cs.answered(ln, src, ans, fl.now())
		}
		if cs.fromClient(ln, src, b) {
			t.Fatal("relayed a frame with no allocation known")
		}
		if len(cs.binds) != 0 || len(cs.pending) != 0 {
			t.Fatal("a request was kept or a binding installed with no allocation known")
		}
	})
}
