package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/pipe"
	"github.com/p2pd-go/p2pd/pkg/portmap"
)

// echo checks an ECHO round trip over p.
func echo(t *testing.T, p *agent.Pipe) {
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

// noSecondPipe fails t if to gets another inbound pipe within a second:
// after a connect exactly one pipe must survive.
func noSecondPipe(t *testing.T, to *agenttest.Agent) {
	t.Helper()
	select {
	case extra := <-to.Inbound:
		extra.Close()
		t.Errorf("a second inbound pipe (%s, %s)", extra.Kind, extra.PipeID)
	case <-time.After(time.Second):
	}
}

func connect(t *testing.T, from, to *agenttest.Agent, wantWinner string) *agent.Pipe {
	t.Helper()
	p, rep, err := from.Connect(context.Background(), to.Addr(t))
	if err != nil {
		t.Fatalf("connect: %v (report %+v)", err, rep)
	}
	t.Cleanup(func() { p.Close() })
	t.Logf("connected by %s in %s: %+v", rep.Winner, rep.Total, rep.Phases)
	if rep.Winner != wantWinner {
		t.Errorf("winner %q, want %q", rep.Winner, wantWinner)
	}
	if p.Peer != to.ID() {
		t.Errorf("pipe peer %s, want %s", p.Peer, to.ID())
	}
	echo(t, p)
	select {
	case in := <-to.Inbound:
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
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	a := agenttest.StartAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("a"), s)
	bRouter := lab.AddRouter("home", natlab.PortRestrictedCone)
	b := agenttest.StartAgent(t, bRouter.AddHost("b"), s)
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
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	r := lab.AddRouter("home", natlab.Symmetric)
	c, d := agenttest.StartAgent(t, r.AddHost("c"), s), agenttest.StartAgent(t, r.AddHost("d"), s)
	p := connect(t, c, d, node.Direct)
	if !strings.HasPrefix(p.RemoteAddr().Addr().String(), "10.") {
		t.Errorf("pipe goes to %s, want d's LAN address", p.RemoteAddr())
	}
}

// Scenario 3: signalling through Debian's mosquitto works unchanged.
func TestMosquittoSignalling(t *testing.T) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.Mosquitto)
	a := agenttest.StartAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("a"), s)
	b := agenttest.StartAgent(t, lab.AddRouter("home", natlab.PortRestrictedCone).AddHost("b"), s)
	connect(t, a, b, node.Reverse)
}

// Scenario 4: one of two brokers dies; signalling and new connections go on.
func TestBrokerLoss(t *testing.T) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD, agenttest.Mosquitto)
	a := agenttest.StartAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("a"), s)
	b := agenttest.StartAgent(t, lab.AddRouter("home", natlab.PortRestrictedCone).AddHost("b"), s)
	connect(t, a, b, node.Reverse)
	s.Procs[0].Kill() // our mqttd
	t.Run("after mqttd died", func(t *testing.T) { connect(t, a, b, node.Reverse) })
}

// Scenario 7: behind a NAT whose gateway runs miniupnpd, the agent maps its
// port and a peer connects to it directly.
func TestUPnPGateway(t *testing.T) {
	lab := natlab.NewWithOptions(t, natlab.Options{WAN4: natlab.PublicWAN4})
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	a := agenttest.StartAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("a"), s)
	r := lab.AddRouter("home", natlab.PortRestrictedCone)
	r.StartMiniupnpd(t)
	h := r.AddHost("b")
	waitNATPMP(t, h)
	b := agenttest.StartAgent(t, h, s)
	// Mapping runs in the background: start-up does not wait for it.
	for deadline := time.Now().Add(10 * time.Second); b.Status().PortMap.State == agent.PortMapTrying && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if st := b.Status().PortMap; st.State != agent.PortMapMapped || st.External == "" {
		t.Fatalf("port-mapping state %+v", st)
	}
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
