package agent

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testbin"
	"github.com/p2pd-go/p2pd/internal/testenv"
	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/pipe"
	"github.com/p2pd-go/p2pd/pkg/portmap"
	"github.com/p2pd-go/p2pd/pkg/signal"
	"github.com/prometheus/client_golang/prometheus"
)

// stack is the private server side of a lab: stund on two addresses and
// one or two MQTT brokers.
type stack struct {
	srv     *natlab.Host
	a1, a2  netip.Addr
	stun    []netip.AddrPort
	brokers []signal.Broker
	procs   []*natlab.Proc
}

// broker kinds a stack can run.
const (
	ourMQTTD  = "mqttd"
	mosquitto = "mosquitto"
)

func newStack(t *testing.T, lab *natlab.Lab, brokers ...string) *stack {
	t.Helper()
	addrs := lab.AllocWAN(2, 0)
	s := &stack{srv: lab.AddServer("stack", addrs...), a1: addrs[0], a2: addrs[1]}
	stund := testbin.Build(t, "cmd/stund")
	s.srv.Start(t, stund, "--primary-ip4", s.a1.String(), "--alternate-ip4", s.a2.String(), "--admin", "")
	s.stun = []netip.AddrPort{netip.AddrPortFrom(s.a1, 3478), netip.AddrPortFrom(s.a2, 3478)}
	for i, kind := range brokers {
		addr := netip.AddrPortFrom(addrs[i%2], uint16(1883+i))
		switch kind {
		case ourMQTTD:
			bin := testbin.Build(t, "cmd/mqttd")
			s.procs = append(s.procs, s.srv.Start(t, bin, "--listen", addr.String(), "--ws-listen", "", "--admin-listen", "", "--allow-anonymous"))
		case mosquitto:
			testenv.RequireTools(t, "mosquitto")
			conf := filepath.Join(t.TempDir(), "mosquitto.conf")
			body := fmt.Sprintf("listener %d %s\nallow_anonymous true\npersistence false\n", addr.Port(), addr.Addr())
			if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			s.procs = append(s.procs, s.srv.Start(t, "mosquitto", "-c", conf))
		}
		s.brokers = append(s.brokers, signal.Broker{URL: "tcp://" + addr.String()})
		waitTCP(t, s.srv, addr)
	}
	waitTCP(t, s.srv, s.stun[0])
	return s
}

// waitTCP waits until something listens on addr.
func waitTCP(t *testing.T, h *natlab.Host, addr netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := h.Net().DialContext(context.Background(), "tcp", addr.String())
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

type labAgent struct {
	*Agent
	reg     *prometheus.Registry
	inbound chan *Pipe
}

// startAgent runs an agent inside lab host h against the stack.
func startAgent(t *testing.T, h *natlab.Host, s *stack) *labAgent {
	t.Helper()
	var nics []netif.NIC
	if err := h.Do(func() error {
		var err error
		nics, err = netif.List(netif.Options{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	la := &labAgent{reg: prometheus.NewRegistry(), inbound: make(chan *Pipe, 8)}
	la.Agent, err = New(Config{
		Identity: id, Net: h.Net(), NICs: nics, STUNServers: s.stun, Brokers: s.brokers,
		OnPipe: func(p *Pipe) { la.inbound <- p }, Registry: la.reg,
		DirectTimeout: 2 * time.Second, ReverseTimeout: 6 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Start(context.Background()); err != nil {
		t.Fatalf("agent on %s: %v", h.Name(), err)
	}
	t.Cleanup(la.Close)
	return la
}

func (la *labAgent) addr(t *testing.T) string {
	a, err := la.Address()
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

// echo checks an ECHO round trip over p.
func echo(t *testing.T, p *Pipe) {
	t.Helper()
	sub := pipe.Sub{Msg: "^echo-check"}
	if err := p.Subscribe(sub); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	want := fmt.Sprintf("echo-check %d", time.Now().UnixNano())
	if err := p.Send(ctx, []byte("ECHO "+want)); err != nil {
		t.Fatal(err)
	}
	m, err := p.Recv(ctx, sub, 5*time.Second)
	if err != nil || string(m.Data) != want {
		t.Fatalf("ECHO round trip: got %q %v", m.Data, err)
	}
}

func connect(t *testing.T, from, to *labAgent, wantWinner string) *Pipe {
	t.Helper()
	p, rep, err := from.Connect(context.Background(), to.addr(t))
	if err != nil {
		t.Fatalf("connect: %v (report %+v)", err, rep)
	}
	t.Cleanup(func() { p.Close() })
	t.Logf("connected by %s: %+v", rep.Winner, rep.Phases)
	if rep.Winner != wantWinner {
		t.Errorf("winner %q, want %q", rep.Winner, wantWinner)
	}
	if p.Peer != to.ID() {
		t.Errorf("pipe peer %s, want %s", p.Peer, to.ID())
	}
	echo(t, p)
	select {
	case in := <-to.inbound:
		t.Cleanup(func() { in.Close() })
		if in.Peer != from.ID() {
			t.Errorf("inbound pipe from %s, want %s", in.Peer, from.ID())
		}
		echo(t, in)
	case <-time.After(5 * time.Second):
		t.Errorf("peer saw no inbound pipe")
	}
	return p
}

// Scenario 1: A on an open host, B behind a port-restricted NAT.
func TestOpenAndPortRestricted(t *testing.T) {
	lab := natlab.New(t)
	s := newStack(t, lab, ourMQTTD)
	a := startAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("a"), s)
	bRouter := lab.AddRouter("home", natlab.PortRestrictedCone)
	b := startAgent(t, bRouter.AddHost("b"), s)
	if got := b.Interfaces()[0].Routes[netif.AF4][0].ExtIP(); got != bRouter.WANAddr() {
		t.Fatalf("b's external address %s, want the router's %s", got, bRouter.WANAddr())
	}
	truth := natlab.PortRestrictedCone.Truth()
	if n := b.Interfaces()[0].NAT; n.Type != truth.NATType || n.Mapping != string(truth.Mapping) || n.Filtering != string(truth.Filtering) || n.Delta.Type != truth.DeltaType {
		t.Errorf("b's NAT %+v, want %+v", n, truth)
	}
	if n := a.Interfaces()[0].NAT; n.Type != natlab.NATOpen {
		t.Errorf("a's NAT %+v, want open", n)
	}
	t.Run("B to A direct", func(t *testing.T) { connect(t, b, a, node.Direct) })
	t.Run("A to B reverse", func(t *testing.T) { connect(t, a, b, node.Reverse) })
}

// Scenario 2: two peers behind the same NAT connect over their LAN addresses.
func TestSameRouter(t *testing.T) {
	lab := natlab.New(t)
	s := newStack(t, lab, ourMQTTD)
	r := lab.AddRouter("home", natlab.Symmetric)
	c, d := startAgent(t, r.AddHost("c"), s), startAgent(t, r.AddHost("d"), s)
	p := connect(t, c, d, node.Direct)
	if !strings.HasPrefix(p.RemoteAddr().Addr().String(), "10.") {
		t.Errorf("pipe goes to %s, want d's LAN address", p.RemoteAddr())
	}
}

// Scenario 3: signalling through Debian's mosquitto works unchanged.
func TestMosquittoSignalling(t *testing.T) {
	lab := natlab.New(t)
	s := newStack(t, lab, mosquitto)
	a := startAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("a"), s)
	b := startAgent(t, lab.AddRouter("home", natlab.PortRestrictedCone).AddHost("b"), s)
	connect(t, a, b, node.Reverse)
}

// Scenario 4: one of two brokers dies; signalling and new connections go on.
func TestBrokerLoss(t *testing.T) {
	lab := natlab.New(t)
	s := newStack(t, lab, ourMQTTD, mosquitto)
	a := startAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("a"), s)
	b := startAgent(t, lab.AddRouter("home", natlab.PortRestrictedCone).AddHost("b"), s)
	connect(t, a, b, node.Reverse)
	s.procs[0].Kill() // our mqttd
	t.Run("after mqttd died", func(t *testing.T) { connect(t, a, b, node.Reverse) })
}

// Scenario 7: behind a NAT whose gateway runs miniupnpd, the agent maps its
// port and a peer connects to it directly.
func TestUPnPGateway(t *testing.T) {
	lab := natlab.NewWithOptions(t, natlab.Options{WAN4: natlab.PublicWAN4})
	s := newStack(t, lab, ourMQTTD)
	a := startAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("a"), s)
	r := lab.AddRouter("home", natlab.PortRestrictedCone)
	r.StartMiniupnpd(t)
	h := r.AddHost("b")
	waitNATPMP(t, h)
	b := startAgent(t, h, s)
	if m := b.PortMapping(); m == nil || m.External.Addr() != r.WANAddr() {
		t.Fatalf("b has no port mapping on %s: %+v", r.WANAddr(), m)
	}
	connect(t, a, b, node.Direct)
}

// waitNATPMP waits until the gateway answers NAT-PMP (miniupnpd starting).
func waitNATPMP(t *testing.T, h *natlab.Host) {
	t.Helper()
	for i := 0; i < 50; i++ {
		m, err := portmap.Map(context.Background(), portmap.Config{Net: h.Net(), Port: 4999, Timeout: 100 * time.Millisecond})
		if err == nil {
			_ = m.Delete()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("miniupnpd did not come up")
}
