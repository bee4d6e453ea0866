package turnserver

import (
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

// topBits sets the two top bits of the message type as the setter before
// MESSAGE-INTEGRITY, so the request is signed over the variant type as an
// attacker would sign it.
type topBits byte

func (b topBits) AddTo(m *stun.Message) error { m.Raw[0] |= byte(b); return nil }

// typeVariants are the first-byte bits that make a frame neither STUN nor
// ChannelData. pion/stun v2 ignores them and would handle the request.
var typeVariants = []topBits{0x80, 0xC0}

// variantRequest builds an authenticated request of method with the type bits set.
func (r *rawClient) variantRequest(bits topBits, method stun.Method, attrs ...stun.Setter) *stun.Message {
	r.t.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
	setters = append(setters, stun.NewUsername(r.user), stun.NewRealm(testRealm), r.nonce, bits, stun.MessageIntegrity(r.key))
	m, err := stun.Build(setters...)
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

// peerAttrs are the attributes of a CreatePermission (channel 0) or ChannelBind to ap.
func peerAttrs(ap netip.AddrPort, channel uint16) []stun.Setter {
	return []stun.Setter{peerSetter{ap}, rawAttr{stun.AttrChannelNumber, []byte{byte(channel >> 8), byte(channel), 0, 0}}}
}

type peerSetter struct{ ap netip.AddrPort }

func (p peerSetter) AddTo(m *stun.Message) error {
	m.Add(stun.AttrXORPeerAddress, xorPeer(p.ap.Addr(), int(p.ap.Port()), m.TransactionID))
	return nil
}

// unanswered sends m over UDP, then a Binding request on the same socket.
// pion handles one socket's datagrams in order, so when the Binding answer
// arrives any answer to m would have come first: m must have none.
func (r *rawClient) unanswered(m *stun.Message) {
	r.t.Helper()
	_ = r.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.conn.Write(m.Raw); err != nil {
		r.t.Fatal(err)
	}
	ping, _ := stun.Build(stun.TransactionID, stun.BindingRequest)
	if _, err := r.conn.Write(ping.Raw); err != nil {
		r.t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for {
		n, err := r.conn.Read(buf)
		if err != nil {
			r.t.Fatalf("no answer to the Binding request after the variant: %v", err)
		}
		res := &stun.Message{Raw: buf[:n]}
		if res.Decode() != nil {
			continue
		}
		switch res.TransactionID {
		case m.TransactionID:
			r.t.Fatalf("type %#04x was answered (%v): it reached pion", m.Raw[:2], res.Type)
		case ping.TransactionID:
			return
		}
	}
}

func TestTypeVariantsNeverReachPion(t *testing.T) {
	self := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name string
		mod  func(*Config)
		// setup runs before the variant; send builds the variant request.
		setup func(t *testing.T, s *Server, r *rawClient)
		send  func(s *Server, r *rawClient, bits topBits) *stun.Message
	}{
		{
			name: "user quota",
			mod:  func(c *Config) { c.MaxAllocsPerUser = 1; c.MaxAllocs = 5 },
			setup: func(t *testing.T, s *Server, _ *rawClient) {
				first := newRawClient(t, "udp", s.UDPAddrs()[0].String(), "alice", "alice-pw")
				if code := first.code(first.allocate()); code != 0 {
					t.Fatalf("first allocation: %d", code)
				}
			},
			send: func(_ *Server, r *rawClient, bits topBits) *stun.Message {
				return r.variantRequest(bits, stun.MethodAllocate, udpTransport)
			},
		},
		{
			name: "total quota",
			mod:  func(c *Config) { c.MaxAllocsPerUser = 5; c.MaxAllocs = 1 },
			setup: func(t *testing.T, s *Server, _ *rawClient) {
				first := newRawClient(t, "udp", s.UDPAddrs()[0].String(), "bob", "bob-pw")
				if code := first.code(first.allocate()); code != 0 {
					t.Fatalf("first allocation: %d", code)
				}
			},
			send: func(_ *Server, r *rawClient, bits topBits) *stun.Message {
				return r.variantRequest(bits, stun.MethodAllocate, udpTransport)
			},
		},
		{
			name:  "drain",
			setup: func(_ *testing.T, s *Server, _ *rawClient) { s.Drain() },
			send: func(_ *Server, r *rawClient, bits topBits) *stun.Message {
				return r.variantRequest(bits, stun.MethodAllocate, udpTransport)
			},
		},
		{
			name:  "TCP relay",
			setup: func(*testing.T, *Server, *rawClient) {},
			send: func(_ *Server, r *rawClient, bits topBits) *stun.Message {
				return r.variantRequest(bits, stun.MethodAllocate, rawAttr{stun.AttrRequestedTransport, []byte{6, 0, 0, 0}})
			},
		},
		{
			name:  "permission to loopback",
			setup: allocated,
			send: func(_ *Server, r *rawClient, bits topBits) *stun.Message {
				return r.variantRequest(bits, stun.MethodCreatePermission, peerSetter{netip.MustParseAddrPort("127.0.0.1:9")})
			},
		},
		{
			name:  "channel to loopback",
			setup: allocated,
			send: func(_ *Server, r *rawClient, bits topBits) *stun.Message {
				return r.variantRequest(bits, stun.MethodChannelBind, peerAttrs(netip.MustParseAddrPort("127.0.0.1:9"), 0x4001)...)
			},
		},
		{
			name:  "permission to the server's own port",
			mod:   loopbackAllowed,
			setup: allocated,
			send: func(s *Server, r *rawClient, bits topBits) *stun.Message {
				port := uint16(s.UDPAddrs()[0].(interface{ AddrPort() netip.AddrPort }).AddrPort().Port())
				return r.variantRequest(bits, stun.MethodCreatePermission, peerSetter{netip.AddrPortFrom(self, port)})
			},
		},
		{
			name:  "channel to the server's own port",
			mod:   loopbackAllowed,
			setup: allocated,
			send: func(s *Server, r *rawClient, bits topBits) *stun.Message {
				port := uint16(s.UDPAddrs()[0].(interface{ AddrPort() netip.AddrPort }).AddrPort().Port())
				return r.variantRequest(bits, stun.MethodChannelBind, peerAttrs(netip.AddrPortFrom(self, port), 0x4002)...)
			},
		},
	}
	for _, tc := range tests {
		for _, bits := range typeVariants {
			t.Run(tc.name+"/"+typeName(bits), func(t *testing.T) {
				s, _ := testServer(t, tc.mod)
				r := newRawClient(t, "udp", s.UDPAddrs()[0].String(), "alice", "alice-pw")
				r.nonceFromServer()
				tc.setup(t, s, r)
				before := s.Allocations()
				r.unanswered(tc.send(s, r, bits))
				if got := s.Allocations(); got != before {
					t.Fatalf("allocations went from %d to %d", before, got)
				}
				if metric(t, s.f.m.invalid) != 1 {
					t.Fatalf("invalid datagrams = %v, want 1", metric(t, s.f.m.invalid))
				}
				if metric(t, s.f.m.active) != float64(s.Allocations()) {
					t.Fatalf("turnd_allocations_active = %v but %d allocations exist", metric(t, s.f.m.active), s.Allocations())
				}
			})
		}
	}
}

// Over TCP a variant frame breaks the framing: the connection is closed
// without an answer or an allocation.
func TestTypeVariantClosesStream(t *testing.T) {
	for _, bits := range typeVariants {
		t.Run(typeName(bits), func(t *testing.T) {
			s, _ := testServer(t, nil)
			r := newRawClient(t, "tcp", s.TCPAddrs()[0].String(), "alice", "alice-pw")
			r.nonceFromServer()
			m := r.variantRequest(bits, stun.MethodAllocate, udpTransport)
			_ = r.conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := r.conn.Write(m.Raw); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(r.conn, make([]byte, stunHeader)); !errors.Is(err, io.EOF) && !isReset(err) {
				t.Fatalf("read after a variant frame: %v, want the connection closed", err)
			}
			if s.Allocations() != 0 {
				t.Fatalf("allocations = %d", s.Allocations())
			}
		})
	}
}

func isReset(err error) bool {
	return err != nil && (errors.Is(err, io.ErrUnexpectedEOF) || containsCode(err, "reset"))
}

func typeName(b topBits) string { return map[topBits]string{0x80: "0x8xxx", 0xC0: "0xCxxx"}[b] }

// allocated allocates on r.
func allocated(t *testing.T, _ *Server, r *rawClient) {
	t.Helper()
	if code := r.code(r.request(stun.MethodAllocate, udpTransport)); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
}

// nonceFromServer asks for a nonce with an unauthenticated Allocate.
func (r *rawClient) nonceFromServer() {
	r.t.Helper()
	m, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport)
	if err := r.nonce.GetFrom(r.roundTrip(m)); err != nil {
		r.t.Fatalf("no nonce: %v", err)
	}
}
