package agent_test

import (
	"testing"

	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/node"
)

// A peer behind a full-cone NAT is reached directly: its agent opened and
// holds the node port's mapping, so a connection from anyone gets in.
func TestFullConeReachedDirectly(t *testing.T) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	fr := lab.AddRouter("fullcone", natlab.FullCone)
	a := agenttest.StartAgent(t, fr.AddHost("a"), s)
	b := agenttest.StartAgent(t, lab.AddRouter("home", natlab.PortRestrictedCone).AddHost("b"), s)
	m := a.NodeMappings()
	nic := a.Interfaces()[0].Routes[netif.AF4][0].NICIP()
	if got := m[nic]; got.Addr() != fr.WANAddr() {
		t.Fatalf("node port mapping %v, want one on the router's %s", m, fr.WANAddr())
	}
	connect(t, b, a, node.Direct)
}

// On a network that blocks UDP the agent still starts: NAT type 7 for UDP,
// the external address learned over TCP, and it is reachable by reverse
// connect.
func TestUDPBlockedStarts(t *testing.T) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	br := lab.AddRouter("blocked", natlab.UDPBlocked)
	a := agenttest.StartAgent(t, br.AddHost("a"), s)
	ifc := a.Interfaces()[0]
	if ifc.NAT.Type != natlab.NATBlocked {
		t.Errorf("NAT type %d (%s), want %d (UDP blocked)", ifc.NAT.Type, ifc.NAT.Info, natlab.NATBlocked)
	}
	if got := ifc.Routes[netif.AF4][0].ExtIP(); got != br.WANAddr() {
		t.Errorf("external address %s, want the router's %s (learned over TCP)", got, br.WANAddr())
	}
	o := agenttest.StartAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("o"), s)
	connect(t, o, a, node.Reverse)
}
