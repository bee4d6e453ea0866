package turnserver

import (
	"fmt"
	"net"
	"testing"

	"github.com/pion/stun/v2"
)

// BenchmarkAllocate measures Allocate (with the 401 nonce round trip) plus
// release over loopback UDP, one allocation at a time.
func BenchmarkAllocate(b *testing.B) {
	s, _ := testServer(b, func(c *Config) { c.MaxAllocsPerUser = 0 })
	addr := s.UDPAddrs()[0].String()
	for b.Loop() {
		r := newRawClient(b, "udp", addr, "alice", "alice-pw")
		if code := r.code(r.allocate()); code != 0 {
			b.Fatalf("allocate: %d", code)
		}
		if code := r.code(r.request(stun.MethodRefresh, rawAttr{stun.AttrLifetime, []byte{0, 0, 0, 0}})); code != 0 {
			b.Fatalf("release: %d", code)
		}
		_ = r.conn.Close()
	}
}

// BenchmarkRelayChannelData measures one ChannelData round trip through the
// relay to a loopback echo peer and back.
func BenchmarkRelayChannelData(b *testing.B) {
	s, _ := testServer(b, loopbackAllowed)
	peer := echoPeerTB(b)
	r := newRawClient(b, "udp", s.UDPAddrs()[0].String(), "alice", "alice-pw")
	if code := r.code(r.allocate()); code != 0 {
		b.Fatalf("allocate: %d", code)
	}
	pa := peer.(*net.UDPAddr).AddrPort()
	if code := r.code(r.peerRequestPort(pa.Addr(), int(pa.Port()), 0x4000)); code != 0 {
		b.Fatalf("channel bind: %d", code)
	}
	frame := append([]byte{0x40, 0x00, 0x00, 100}, make([]byte, 100)...)
	buf := make([]byte, 2048)
	b.SetBytes(100)
	for b.Loop() {
		if _, err := r.conn.Write(frame); err != nil {
			b.Fatal(err)
		}
		if _, err := r.conn.Read(buf); err != nil {
			b.Fatal(fmt.Errorf("read: %w", err))
		}
	}
}
