package node

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/metricstest"
	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/prometheus/client_golang/prometheus"
)

type inboundPipe struct {
	sc    *SecureConn
	hello Hello
}

// startNode runs a node on a loopback address with a free port.
func startNode(t *testing.T, ip string) (*Node, chan inboundPipe) {
	t.Helper()
	in := make(chan inboundPipe, 4)
	n, err := New(Config{
		Identity:      newID(t),
		Listen:        []string{net.JoinHostPort(ip, "0")},
		OnPipe:        func(sc *SecureConn, h Hello) { in <- inboundPipe{sc, h} },
		DirectTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, in
}

// addressOf builds the peer address of a loopback node.
func addressOf(n *Node) peeraddr.Address {
	ap := netip.MustParseAddrPort(n.Addrs()[0].String())
	b := peeraddr.Block{Ext: ap.Addr(), NIC: ap.Addr(), Port: ap.Port(), NATType: 1, DeltaType: 1}
	a := peeraddr.Address{Signal: []int{0}, NodeID: n.ID()}
	if ap.Addr().Is4() {
		a.IPv4 = []peeraddr.Block{b}
	} else {
		a.IPv6 = []peeraddr.Block{b}
	}
	return a
}

func TestDirect(t *testing.T) {
	for _, ip := range []string{"127.0.0.1", "::1"} {
		t.Run(ip, func(t *testing.T) {
			a, _ := startNode(t, ip)
			b, bIn := startNode(t, ip)
			sc, rep, err := a.Connect(context.Background(), addressOf(b), Direct)
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			if rep.Winner != Direct || len(rep.Phases) != 1 {
				t.Errorf("report %+v", rep)
			}
			in := <-bIn
			defer in.sc.Close()
			if in.sc.RemoteNodeID() != a.ID() || in.hello.Kind != KindDirect {
				t.Errorf("b sees %s kind %q", in.sc.RemoteNodeID(), in.hello.Kind)
			}
			if _, err := sc.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if m, err := in.sc.ReadMessage(); err != nil || string(m) != "ping" {
				t.Fatalf("got %q %v", m, err)
			}
		})
	}
}

func TestDirectRefusesImpostor(t *testing.T) {
	a, _ := startNode(t, "127.0.0.1")
	b, bIn := startNode(t, "127.0.0.1")
	// An address claiming some other node id, pointing at b's listener.
	other := newID(t)
	addr := addressOf(b)
	addr.NodeID = identity.NodeID(other.Public)
	_, rep, err := a.Connect(context.Background(), addr)
	if !errors.Is(err, ErrNoStrategy) || !strings.Contains(err.Error(), "does not hold the key of node "+addr.NodeID) {
		t.Fatalf("got %v", err)
	}
	if len(rep.Phases) != 2 || rep.Phases[1].Err != "no signalling configured" {
		t.Errorf("report %+v", rep)
	}
	select {
	case p := <-bIn:
		t.Fatalf("b accepted a pipe meant for another node: %+v", p.hello)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestConnectErrors(t *testing.T) {
	a, _ := startNode(t, "127.0.0.1")
	b, _ := startNode(t, "127.0.0.1")
	tests := []struct {
		name  string
		addr  peeraddr.Address
		strat []string
		want  string
	}{
		{"bad node id", peeraddr.Address{NodeID: "nope"}, nil, "node id"},
		{"unknown strategy", addressOf(b), []string{"teleport"}, `unknown strategy "teleport"`},
		{"no candidates", peeraddr.Address{Signal: []int{0}, NodeID: b.ID()}, []string{Direct}, "no reachable candidate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := a.Connect(context.Background(), tt.addr, tt.strat...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCandidates(t *testing.T) {
	ip := netip.MustParseAddr
	blk := func(ext, nic string, port uint16) peeraddr.Block {
		return peeraddr.Block{Ext: ip(ext), NIC: ip(nic), Port: port, NATType: 5, DeltaType: 2}
	}
	open6 := blk("2001:db8::7", "fe80::7", 10001)
	open6.NATType, open6.DeltaType = 1, 1
	filtered6 := blk("2001:db8::8", "2001:db8::8", 10001) // behind a stateful firewall
	peer := peeraddr.Address{
		IPv4: []peeraddr.Block{blk("203.0.113.7", "10.0.0.2", 10001)},
		IPv6: []peeraddr.Block{open6, filtered6},
	}
	tests := []struct {
		name string
		mine peeraddr.Address
		want []string
	}{
		{"different routers", peeraddr.Address{IPv4: []peeraddr.Block{blk("198.51.100.1", "10.0.0.3", 1)}},
			[]string{"[2001:db8::7]:10001", "203.0.113.7:10001"}},
		{"same router uses NIC", peeraddr.Address{IPv4: []peeraddr.Block{blk("203.0.113.7", "10.0.0.3", 1)}},
			[]string{"[2001:db8::7]:10001", "10.0.0.2:10001"}},
		{"same v6 ext skips link-local NIC", peeraddr.Address{IPv6: []peeraddr.Block{blk("2001:db8::7", "fe80::9", 1)}},
			[]string{"203.0.113.7:10001"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range Candidates(peer, tt.mine) {
				got = append(got, c.String())
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	m.Connects.WithLabelValues(Direct, "ok").Inc()
	m.Duration.WithLabelValues(Direct).Observe(0.1)
	m.Handshakes.WithLabelValues("ok").Inc()
	metricstest.Lint(t, reg, "agent")
}
