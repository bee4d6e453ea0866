package turnserver

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v2"
	"github.com/pion/turn/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/p2pd-go/p2pd/internal/metricstest"
)

// relayEcho sends through the allocation to an echo peer and waits for the echo.
func relayEcho(t *testing.T, relay net.PacketConn, peer net.Addr, msg []byte) {
	t.Helper()
	buf := make([]byte, 1500)
	// UDP may drop on a busy machine: resend a bounded number of times.
	for attempt := 0; attempt < 20; attempt++ {
		if _, err := relay.WriteTo(msg, peer); err != nil {
			t.Fatalf("relay write: %v", err)
		}
		_ = relay.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, from, err := relay.ReadFrom(buf)
		if err == nil {
			if !bytes.Equal(buf[:n], msg) || from.String() != peer.String() {
				t.Fatalf("got %q from %s, want %q from %s", buf[:n], from, msg, peer)
			}
			return
		}
	}
	t.Fatal("no echo through the relay")
}

func TestRelayThroughServer(t *testing.T) {
	s, reg := testServer(t, loopbackAllowed)
	peer := echoPeer(t)
	rest := RESTUsername(time.Now().Add(time.Hour), "carol")
	creds := []struct{ name, user, pass string }{
		{"static", "alice", "alice-pw"},
		{"rest", rest, RESTPassword("s3cret-new", rest)},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, cr := range creds {
			t.Run(network+"/"+cr.name, func(t *testing.T) {
				c := pionClient(t, s, network, cr.user, cr.pass)
				relay, err := c.Allocate()
				if err != nil {
					t.Fatalf("allocate: %v", err)
				}
				defer relay.Close()
				relayEcho(t, relay, peer, []byte("hello via "+network))
				// The second exchange goes over the channel pion binds after the first.
				relayEcho(t, relay, peer, []byte("again via "+network))
			})
		}
	}
	m := s.f.m
	if metric(t, m.created) < 4 {
		t.Errorf("allocations created = %v, want >= 4", metric(t, m.created))
	}
	if metric(t, m.pktsPeer) < 8 || metric(t, m.pktsClient) < 8 || metric(t, m.bytesPeer) == 0 || metric(t, m.bytesClient) == 0 {
		t.Errorf("relayed counters too low: to_peer %v pkts, to_client %v pkts", metric(t, m.pktsPeer), metric(t, m.pktsClient))
	}
	metricstest.Lint(t, reg, "turnd")
}

func TestPeerBypassMatrixGets403(t *testing.T) {
	s, _ := testServer(t, func(c *Config) {
		c.SelfAddrs = []netip.Addr{netip.MustParseAddr(testSelf4), netip.MustParseAddr(testSelf6)}
	})
	for _, network := range []string{"udp", "tcp"} {
		addr := listenAddr(s, network)
		r := newRawClient(t, network, addr, "alice", "alice-pw")
		res := r.allocate()
		if code := r.code(res); code != 0 {
			t.Fatalf("allocate: error %d", code)
		}
		for _, tc := range refusedMatrix {
			if tc.addr == "81.2.69.255" { // needs a server interface on 81.2.69.0/24
				continue
			}
			ip := netip.MustParseAddr(tc.addr)
			t.Run(network+"/"+tc.addr, func(t *testing.T) {
				r.t = t
				before := metric(t, s.f.m.denials.WithLabelValues(tc.reason))
				if code := r.code(r.peerRequest(ip, 0)); code != 403 {
					t.Errorf("CreatePermission %s: got %d, want 403", ip, code)
				}
				if code := r.code(r.peerRequest(ip, 0x4001)); code != 403 {
					t.Errorf("ChannelBind %s: got %d, want 403", ip, code)
				}
				if got := metric(t, s.f.m.denials.WithLabelValues(tc.reason)) - before; got != 2 {
					t.Errorf("denials{reason=%s} grew by %v, want 2", tc.reason, got)
				}
			})
		}
		// Public IPv4 peers are allowed (IPv6 ones get 443: relays are IPv4).
		for _, a := range allowedMatrix {
			ip := netip.MustParseAddr(a)
			want := 443
			if ip.Is4() {
				want = 0
			}
			t.Run(network+"/allowed "+a, func(t *testing.T) {
				r.t = t
				if code := r.code(r.peerRequest(ip, 0)); code != want {
					t.Errorf("CreatePermission to %s: got %d, want %d", ip, code, want)
				}
			})
		}
		// The server's own address is a peer only at a live allocation's
		// relay port, not at any port of the relay range.
		t.Run(network+"/self at a live relay", func(t *testing.T) {
			r.t = t
			var relayed stun.XORMappedAddress
			if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
				t.Fatal(err)
			}
			self := netip.MustParseAddr(testSelf4)
			if code := r.code(r.peerRequestPort(self, relayed.Port, 0)); code != 0 {
				t.Errorf("CreatePermission to self at a live relay port: error %d", code)
			}
			if code := r.code(r.peerRequestPort(self, relayed.Port, 0x4002)); code != 0 {
				t.Errorf("ChannelBind to self at a live relay port: error %d", code)
			}
			idle := s.cfg.RelayMinPort
			if idle == relayed.Port {
				idle++
			}
			if code := r.code(r.peerRequestPort(self, idle, 0)); code != 403 {
				t.Errorf("CreatePermission to self at a relay port without allocation: got %d, want 403", code)
			}
			if code := r.code(r.peerRequestPort(self, s.cfg.RelayMinPort-1, 0)); code != 403 {
				t.Errorf("CreatePermission to self below the relay ports: got %d, want 403", code)
			}
		})
	}
}

// --allow-peer covering the server's own addresses never opens turnd's own
// TURN and admin ports, neither in CreatePermission/ChannelBind nor on the
// relay socket.
func TestAllowPeerNeverOpensOwnPorts(t *testing.T) {
	admin, err := net.ListenPacket("udp4", "127.0.0.1:0") // stands in for the admin port
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	adminPort := admin.LocalAddr().(*net.UDPAddr).Port
	s, _ := testServer(t, func(c *Config) {
		loopbackAllowed(c)
		c.OwnPorts = []int{adminPort}
	})
	turnPort := s.UDPAddrs()[0].(*net.UDPAddr).Port
	for _, network := range []string{"udp", "tcp"} {
		addr := listenAddr(s, network)
		t.Run(network, func(t *testing.T) {
			r := newRawClient(t, network, addr, "alice", "alice-pw")
			if code := r.code(r.allocate()); code != 0 {
				t.Fatalf("allocate: %d", code)
			}
			for _, peer := range []string{"127.0.0.1", "127.0.0.2", "::ffff:127.0.0.1"} {
				for _, port := range []int{turnPort, adminPort} {
					ip := netip.MustParseAddr(peer)
					if code := r.code(r.peerRequestPort(ip, port, 0)); code != 403 {
						t.Errorf("CreatePermission %s port %d: got %d, want 403", peer, port, code)
					}
					if code := r.code(r.peerRequestPort(ip, port, 0x4003)); code != 403 {
						t.Errorf("ChannelBind %s port %d: got %d, want 403", peer, port, code)
					}
				}
			}
			if code := r.code(r.peerRequestPort(netip.MustParseAddr("127.0.0.1"), 4000, 0)); code != 0 {
				t.Errorf("CreatePermission to an allowed peer: %d", code)
			}
		})
	}
	// A permission covers every port of an address; the relay socket still
	// refuses the own ports.
	c := pionClient(t, s, "udp", "alice", "alice-pw")
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	peer := echoPeer(t)
	relayEcho(t, relay, peer, []byte("permission for 127.0.0.1"))
	before := metric(t, s.f.m.denials.WithLabelValues(ReasonOwnPort))
	_, _ = relay.WriteTo([]byte("to the admin port"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: adminPort})
	relayEcho(t, relay, peer, []byte("after")) // the server handled the send above
	for range 100 {
		if metric(t, s.f.m.denials.WithLabelValues(ReasonOwnPort)) > before {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if metric(t, s.f.m.denials.WithLabelValues(ReasonOwnPort)) == before {
		t.Fatal("a send to the admin port was not refused by the relay socket")
	}
	_ = admin.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _, err := admin.ReadFrom(make([]byte, 100)); err == nil {
		t.Fatalf("the admin port got %d bytes through the relay", n)
	}
}

func TestPionClientSees403(t *testing.T) {
	s, _ := testServer(t, nil)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			c := pionClient(t, s, network, "alice", "alice-pw")
			relay, err := c.Allocate()
			if err != nil {
				t.Fatal(err)
			}
			defer relay.Close()
			_, err = relay.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})
			if !containsCode(err, "403") {
				t.Fatalf("send to loopback peer: err = %v, want a 403", err)
			}
		})
	}
}

func TestRelaySocketRefusesPolicyDestinations(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	policy := NewPolicy(nil, []netip.Addr{netip.MustParseAddr(testSelf4)}, nil).
		WithLiveRelays(func(port uint16) bool { return port == 15000 }).WithOwnPorts(3478)
	f := &filter{policy: policy, m: NewMetrics(), tracker: newTracker(0, 0, NewMetrics())}
	rc := &relayConn{PacketConn: pc, f: f, key: "k"}
	defer rc.Close()
	for _, a := range []string{"127.0.0.1:9", "[::ffff:127.0.0.1]:9", "169.254.169.254:80", "[::ffff:10.0.0.1]:9",
		testSelf4 + ":22", testSelf4 + ":15001", "[::ffff:" + testSelf4 + "]:3478", "192.0.2.1:9", "198.18.0.1:9", "[2002:a00:1::]:9"} {
		t.Run(a, func(t *testing.T) {
			_, err := rc.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(a)))
			if !errors.Is(err, errPeerRefused) {
				t.Fatalf("WriteTo %s: err = %v, want errPeerRefused", a, err)
			}
		})
	}
}

func TestExpiredRESTCredentialRefused(t *testing.T) {
	s, _ := testServer(t, nil)
	expired := RESTUsername(time.Now().Add(-time.Minute), "dave")
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			c := pionClient(t, s, network, expired, RESTPassword("s3cret-old", expired))
			if _, err := c.Allocate(); err == nil {
				t.Fatal("allocation with an expired REST credential succeeded")
			}
		})
	}
	if got := metric(t, s.f.m.authFailures.WithLabelValues(AuthExpired)); got < 2 {
		t.Errorf("auth failures{reason=expired} = %v, want >= 2", got)
	}
}

// Wrong credentials get 401 with the realm and a fresh nonce (RFC 8489
// 9.2.4), so clients retry or report a credential problem; 400 would say the
// request itself was malformed.
func TestWrongCredentialsGet401(t *testing.T) {
	s, _ := testServer(t, nil)
	creds := []struct{ name, user, pass, reason string }{
		{"bad password", "alice", "nope", AuthBadIntegrity},
		{"unknown user", "mallory", "pw", AuthUnknownUser},
		{"wrong REST secret", RESTUsername(time.Now().Add(time.Hour), "dave"), RESTPassword("other", RESTUsername(time.Now().Add(time.Hour), "dave")), AuthBadIntegrity},
		{"expired REST credential", RESTUsername(time.Now().Add(-time.Minute), "dave"), RESTPassword("s3cret-new", RESTUsername(time.Now().Add(-time.Minute), "dave")), AuthExpired},
	}
	for _, network := range []string{"udp", "tcp"} {
		addr := listenAddr(s, network)
		for _, cr := range creds {
			t.Run(network+"/"+cr.name, func(t *testing.T) {
				r := newRawClient(t, network, addr, cr.user, cr.pass)
				before := metric(t, s.f.m.authFailures.WithLabelValues(cr.reason))
				r.nonceFromServer()
				held := s.Allocations() // earlier subtests' allocations
				for _, method := range []stun.Method{stun.MethodAllocate, stun.MethodRefresh} {
					res := r.request(method, udpTransport)
					if code := r.code(res); code != 401 {
						t.Fatalf("%v with %s: got %d, want 401", method, cr.name, code)
					}
					var nonce stun.Nonce
					var realm stun.Realm
					if nonce.GetFrom(res) != nil || realm.GetFrom(res) != nil || realm.String() != testRealm {
						t.Fatalf("401 without NONCE and REALM %q: %v", testRealm, res)
					}
					r.nonce = nonce
				}
				if got := metric(t, s.f.m.authFailures.WithLabelValues(cr.reason)) - before; got != 2 {
					t.Errorf("auth failures{reason=%s} grew by %v, want 2", cr.reason, got)
				}
				if s.Allocations() > held {
					t.Fatalf("allocations grew from %d to %d", held, s.Allocations())
				}
				// The nonce of the 401 is valid: with right credentials it
				// allocates at once (no 438 Stale Nonce).
				r.user, r.key = "alice", turn.GenerateAuthKey("alice", testRealm, "alice-pw")
				if code := r.code(r.request(stun.MethodAllocate, udpTransport)); code != 0 {
					t.Fatalf("allocate with the 401's nonce and right credentials: %d", code)
				}
			})
		}
	}
	// A request without USERNAME is malformed: 400.
	t.Run("no username", func(t *testing.T) {
		r := newRawClient(t, "udp", s.UDPAddrs()[0].String(), "alice", "alice-pw")
		r.nonceFromServer()
		m, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport,
			stun.NewRealm(testRealm), r.nonce, stun.MessageIntegrity(r.key))
		if code := r.code(r.roundTrip(m)); code != 400 {
			t.Fatalf("got %d, want 400", code)
		}
	})
}

// Relays are IPv4 only (pion/turn v3): an IPv6 relay request gets 440 and an
// IPv6 peer 443 (RFC 6156), not a silent IPv4 relay.
func TestIPv6RelayRefused(t *testing.T) {
	s, _ := testServer(t, nil)
	family := func(b byte) rawAttr { return rawAttr{stun.AttrRequestedAddressFamily, []byte{b, 0, 0, 0}} }
	for _, network := range []string{"udp", "tcp"} {
		addr := listenAddr(s, network)
		t.Run(network, func(t *testing.T) {
			r := newRawClient(t, network, addr, "alice", "alice-pw")
			r.nonceFromServer()
			if code := r.code(r.request(stun.MethodAllocate, udpTransport, family(0x02))); code != 440 {
				t.Fatalf("IPv6 relay: got %d, want 440", code)
			}
			if code := r.code(r.request(stun.MethodAllocate, udpTransport, family(0x07))); code != 400 {
				t.Fatalf("unknown family: got %d, want 400", code)
			}
			if code := r.code(r.request(stun.MethodAllocate, udpTransport, family(0x01))); code != 0 {
				t.Fatalf("IPv4 relay: error %d", code)
			}
			if code := r.code(r.peerRequest(netip.MustParseAddr("2001:4860:4860::8888"), 0)); code != 443 {
				t.Fatalf("IPv6 peer: got %d, want 443", code)
			}
			if code := r.code(r.peerRequest(netip.MustParseAddr("2001:4860:4860::8888"), 0x4001)); code != 443 {
				t.Fatalf("IPv6 channel peer: got %d, want 443", code)
			}
		})
	}
	if got := metric(t, s.f.m.familyRefused); got != 6 {
		t.Errorf("turnd_family_refusals_total = %v, want 6", got)
	}
}

func TestQuotaGets486(t *testing.T) {
	s, _ := testServer(t, func(c *Config) { c.MaxAllocsPerUser = 1; c.MaxAllocs = 2 })
	udp, tcp := s.UDPAddrs()[0].String(), s.TCPAddrs()[0].String()

	a1 := newRawClient(t, "udp", udp, "alice", "alice-pw")
	if code := a1.code(a1.allocate()); code != 0 {
		t.Fatalf("first allocation: %d", code)
	}
	// A retransmitted Allocate on the same 5-tuple is not a second allocation.
	if code := a1.code(a1.request(stun.MethodAllocate, udpTransport)); code == 486 {
		t.Fatalf("second Allocate on the same 5-tuple got 486, want pion's 437")
	}
	a2 := newRawClient(t, "tcp", tcp, "alice", "alice-pw")
	if code := a2.code(a2.allocate()); code != 486 {
		t.Fatalf("alice's second allocation: got %d, want 486", code)
	}
	b1 := newRawClient(t, "udp", udp, "bob", "bob-pw")
	if code := b1.code(b1.allocate()); code != 0 {
		t.Fatalf("bob's allocation: %d", code)
	}
	rest := RESTUsername(time.Now().Add(time.Hour), "erin")
	e1 := newRawClient(t, "udp", udp, rest, RESTPassword("s3cret-old", rest))
	if code := e1.code(e1.allocate()); code != 486 {
		t.Fatalf("third allocation over the total limit: got %d, want 486", code)
	}
	if metric(t, s.f.m.quota.WithLabelValues(quotaUser)) != 1 || metric(t, s.f.m.quota.WithLabelValues(quotaTotal)) != 1 {
		t.Errorf("quota refusals: user %v total %v, want 1 and 1",
			metric(t, s.f.m.quota.WithLabelValues(quotaUser)), metric(t, s.f.m.quota.WithLabelValues(quotaTotal)))
	}
	// pion's client reports the 486 as well.
	c := pionClient(t, s, "udp", "alice", "alice-pw")
	if _, err := c.Allocate(); !containsCode(err, "486") {
		t.Fatalf("pion client: err = %v, want 486", err)
	}
	// Releasing an allocation frees the quota.
	res := a1.request(stun.MethodRefresh, rawAttr{stun.AttrLifetime, []byte{0, 0, 0, 0}})
	if code := a1.code(res); code != 0 {
		t.Fatalf("release: %d", code)
	}
	a3 := newRawClient(t, "udp", udp, "alice", "alice-pw")
	if code := a3.code(a3.allocate()); code != 0 {
		t.Fatalf("allocation after release: got %d, want success", code)
	}
	if metric(t, s.f.m.expired) != 1 || metric(t, s.f.m.active) != 2 {
		t.Errorf("expired %v active %v, want 1 and 2", metric(t, s.f.m.expired), metric(t, s.f.m.active))
	}
}

func TestTCPRelayRequestGets442(t *testing.T) {
	s, _ := testServer(t, nil)
	r := newRawClient(t, "udp", s.UDPAddrs()[0].String(), "alice", "alice-pw")
	tcpTransport := rawAttr{stun.AttrRequestedTransport, []byte{6, 0, 0, 0}}
	m, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), tcpTransport)
	if err := r.nonce.GetFrom(r.roundTrip(m)); err != nil {
		t.Fatal(err)
	}
	if code := r.code(r.request(stun.MethodAllocate, tcpTransport)); code != 442 {
		t.Fatalf("Allocate for a TCP relay: got %d, want 442", code)
	}
	if code := r.code(r.allocate()); code != 0 {
		t.Fatalf("UDP allocation after the refusal: %d", code)
	}
}

func TestDrain(t *testing.T) {
	s, _ := testServer(t, loopbackAllowed)
	peer := echoPeer(t)
	c := pionClient(t, s, "udp", "alice", "alice-pw")
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	s.Drain()
	if s.Health() == nil {
		t.Error("healthy while draining")
	}
	r := newRawClient(t, "udp", s.UDPAddrs()[0].String(), "bob", "bob-pw")
	if code := r.code(r.allocate()); code != 508 {
		t.Fatalf("allocate while draining: got %d, want 508", code)
	}
	relayEcho(t, relay, peer, []byte("still relaying"))
	relay.Close() // releases the allocation; Shutdown then returns without waiting out the grace
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(t.Context(), time.Hour) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Shutdown did not return after the last allocation ended")
	}
}

// TestRegistryShared: a second server given the registry of a running one
// is refused with an error naming the clash (it used to panic), and the
// first keeps its metrics.
func TestRegistryShared(t *testing.T) {
	s, reg := testServer(t, nil)
	cfg := s.cfg
	cfg.Port = 0
	second, err := New(cfg, nil, reg)
	var are prometheus.AlreadyRegisteredError
	if err == nil {
		_ = second.Close()
		t.Fatal("a second server on the same registry started")
	}
	if !errors.As(err, &are) {
		t.Fatalf("err = %v, want prometheus.AlreadyRegisteredError", err)
	}
	if n, err := testutil.GatherAndCount(reg, "turnd_allocations_active"); err != nil || n != 1 {
		t.Fatalf("first server's turnd_allocations_active: %d series (%v), want 1", n, err)
	}
}
