package punch

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/nat"
	"github.com/p2pd-go/p2pd/pkg/stun"
)

func loopbackSocket(t *testing.T) *UDPSocket {
	t.Helper()
	s, err := ListenUDP(context.Background(), nil, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestRunUDP: two sockets on loopback punch at a meeting time; the
// initiator dials the endpoint the other's punch datagrams came from, the
// other accepts, and the stream carries data both ways. An unpredictable
// peer (AnyPort, its target a wrong port) is still found by its datagrams.
func TestRunUDP(t *testing.T) {
	for _, tt := range []struct {
		name     string
		wrongTgt bool // the initiator's target for the responder names the wrong port
	}{{"both targets right", false}, {"peer port unpredictable", true}} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a, b := loopbackSocket(t), loopbackSocket(t)
			at := time.Now().Add(50 * time.Millisecond)
			bTarget := b.LocalAddr()
			if tt.wrongTgt {
				bTarget = netip.AddrPortFrom(bTarget.Addr(), bTarget.Port()^1)
			}
			type res struct {
				c   net.Conn
				st  UDPStats
				err error
			}
			run := func(s *UDPSocket, targets []netip.AddrPort, initiator bool) chan res {
				ch := make(chan res, 1)
				go func() {
					var got net.Conn
					st, err := RunUDP(ctx, UDPConfig{Socket: s, PipeID: "pipe1", Targets: targets, Initiator: initiator,
						AnyPort: tt.wrongTgt, At: at}, func(c net.Conn) bool { got = c; return true })
					ch <- res{got, st, err}
				}()
				return ch
			}
			ra := run(a, []netip.AddrPort{bTarget}, true)
			rb := run(b, []netip.AddrPort{a.LocalAddr()}, false)
			x, y := <-ra, <-rb
			if x.err != nil || y.err != nil {
				t.Fatalf("initiator: %v (%s); responder: %v (%s)", x.err, x.st, y.err, y.st)
			}
			t.Logf("initiator %s; responder %s", x.st, y.st)
			for _, d := range []struct {
				name     string
				from, to net.Conn
			}{{"initiator to responder", x.c, y.c}, {"responder to initiator", y.c, x.c}} {
				msg := []byte("punched " + d.name)
				if _, err := d.from.Write(msg); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(d.to, got); err != nil || string(got) != string(msg) {
					t.Fatalf("%s: %q, %v", d.name, got, err)
				}
			}
			x.c.Close()
			y.c.Close()
		})
	}
}

// TestRunUDPNoPeer: with nobody at the target the punch ends with
// ErrNoConnection after its window, and a cancelled one with ctx's error.
func TestRunUDPNoPeer(t *testing.T) {
	dead := loopbackSocket(t) // never runs a punch
	for _, tt := range []struct {
		name   string
		cancel bool
		want   error
	}{{"window passes", false, ErrNoConnection}, {"cancelled", true, context.Canceled}} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			if tt.cancel {
				cancel()
			}
			defer cancel()
			s := loopbackSocket(t)
			_, err := RunUDP(ctx, UDPConfig{Socket: s, PipeID: "p", Targets: []netip.AddrPort{dead.LocalAddr()},
				Initiator: true, At: time.Now(), Window: 300 * time.Millisecond}, func(c net.Conn) bool { return true })
			if !errors.Is(err, tt.want) {
				t.Fatalf("RunUDP = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestPlanUDP: UDP follows Plan except where a side's UDP is blocked;
// with a symmetric side it goes alone.
func TestPlanUDP(t *testing.T) {
	var (
		port    = Profile{Type: nat.RestrictPortNAT, Delta: nat.Delta{Type: nat.DeltaEqual}}
		symSeq  = Profile{Type: nat.SymmetricNAT, Delta: nat.Delta{Type: nat.DeltaIndependent, Value: 1}}
		symRand = Profile{Type: nat.SymmetricNAT, Delta: nat.Delta{Type: nat.DeltaRandom}}
		blocked = Profile{Type: nat.BlockedNAT}
	)
	for _, tt := range []struct {
		name       string
		mine, peer Profile
		ok, alone  bool
	}{
		{"port-restricted both", port, port, true, false},
		{"symmetric sequential to port-restricted", symSeq, port, true, true},
		{"symmetric random to port-restricted", symRand, port, false, true},
		{"udp-blocked to port-restricted", blocked, port, false, false},
		{"port-restricted to udp-blocked", port, blocked, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := PlanUDP(tt.mine, tt.peer)
			if d.OK != tt.ok || d.Reason == "" {
				t.Fatalf("PlanUDP(%v, %v) = %+v, want ok=%v with a reason", tt.mine, tt.peer, d, tt.ok)
			}
			if r := PlanUDP(tt.peer, tt.mine); r.OK != d.OK {
				t.Fatalf("PlanUDP is not symmetric: %+v one way, %+v the other", d, r)
			}
			if UDPAlone(tt.mine, tt.peer) != UDPAlone(tt.peer, tt.mine) || UDPAlone(tt.mine, tt.peer) != tt.alone {
				t.Fatalf("UDPAlone(%v, %v) = %v, want %v both ways", tt.mine, tt.peer, UDPAlone(tt.mine, tt.peer), tt.alone)
			}
		})
	}
}

// TestUDPSocketMapping: the mapping comes by STUN from the punch socket
// itself (on loopback: its own address), and the socket punches afterwards
// (the STUN reader let go of it).
func TestUDPSocketMapping(t *testing.T) {
	var srv *stun.Server
	var err error
	for range 50 {
		p := uint16(20000 + rand.IntN(12000))
		srv, err = stun.Listen(stun.ServerConfig{Primary4: netip.MustParseAddr("127.0.0.1"), Port: p, AltPort: p + 1, NoTCP: true, Sockets: 1})
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b := loopbackSocket(t), loopbackSocket(t)
	var mapped []netip.AddrPort
	for _, s := range []*UDPSocket{a, b} {
		m, err := s.Mapping(ctx, srv.UDPAddrs())
		if err != nil {
			t.Fatal(err)
		}
		if m != s.LocalAddr() {
			t.Fatalf("mapping %s, want the socket's %s", m, s.LocalAddr())
		}
		mapped = append(mapped, m)
	}
	at := time.Now().Add(20 * time.Millisecond)
	errs := make(chan error, 1)
	go func() {
		_, err := RunUDP(ctx, UDPConfig{Socket: b, PipeID: "m", Targets: mapped[:1], At: at}, func(c net.Conn) bool { c.Close(); return true })
		errs <- err
	}()
	if _, err := RunUDP(ctx, UDPConfig{Socket: a, PipeID: "m", Targets: mapped[1:], Initiator: true, At: at},
		func(c net.Conn) bool { c.Close(); return true }); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}
