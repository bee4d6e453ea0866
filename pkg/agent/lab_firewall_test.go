package agent_test

import (
	"strings"
	"testing"

	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/node"
)

// TestLabPublicIPv4Filtering: an agent on a public IPv4 address (no
// translation) measures that route's filtering like a NATed one and
// advertises the type it gives: behind natlab's firewall routers the IPv4
// block is open (1) only when nothing filters, and says the same as the
// IPv6 block behind the same firewall.
func TestLabPublicIPv4Filtering(t *testing.T) {
	lab := natlab.New(t)
	s := agenttest.NewStack6(t, lab, agenttest.MQTTD)
	for _, b := range []natlab.Behaviour{natlab.Open, natlab.FullCone, natlab.RestrictedCone, natlab.PortRestrictedCone, natlab.UDPBlocked} {
		t.Run(b.String(), func(t *testing.T) {
			h := lab.AddFirewall("fw-"+b.String(), b).AddHost("h-" + b.String())
			a := agenttest.StartAgent(t, h, s)
			truth := b.Truth6()
			ifc := a.Interfaces()[0]
			r4 := ifc.Routes[netif.AF4]
			if len(r4) == 0 || r4[0].ExtIP() != h.IP4() || !r4[0].Public() {
				t.Fatalf("IPv4 routes %+v: want a public route on the host's own %s", r4, h.IP4())
			}
			n := ifc.NAT
			t.Logf("IPv4 NAT record %+v", n)
			wantFiltering := string(truth.Filtering)
			if b == natlab.UDPBlocked {
				wantFiltering = "" // not measured: no UDP answer
			}
			if n.Type != truth.NATType || n.Filtering != wantFiltering {
				t.Errorf("IPv4 NAT type %d filtering %q, want %d %q", n.Type, n.Filtering, truth.NATType, wantFiltering)
			}
			addr, err := a.Address()
			if err != nil {
				t.Fatal(err)
			}
			if len(addr.IPv4) == 0 || addr.IPv4[0].NATType != truth.NATType {
				t.Errorf("address %s: want an IPv4 block of NAT type %d", addr, truth.NATType)
			}
			// The firewall filters IPv6 alike (natlab), and it is measured alike.
			if len(addr.IPv6) == 0 || addr.IPv6[0].NATType != truth.NATType {
				t.Errorf("address %s: want an IPv6 block of NAT type %d", addr, truth.NATType)
			}
		})
	}
}

// TestLabPublicIPv4Firewall: peers of an agent on a public IPv4 address
// behind a port-restricted firewall do not dial it (direct is skipped,
// naming the firewall): an open peer has it connect back (reverse), a
// peer behind a port-restricted NAT punches; the firewalled agent itself
// still dials the open one directly.
func TestLabPublicIPv4Firewall(t *testing.T) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	f := agenttest.StartAgent(t, lab.AddFirewall("fw", natlab.PortRestrictedCone).AddHost("f"), s)
	o := agenttest.StartAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("o"), s)
	p := agenttest.StartAgent(t, lab.AddRouter("home", natlab.PortRestrictedCone).AddHost("p"), s)
	addr, err := f.Address()
	if err != nil {
		t.Fatal(err)
	}
	if len(addr.IPv4) == 0 || addr.IPv4[0].NATType != natlab.NATRestrictedPort || addr.IPv4[0].Ext != addr.IPv4[0].NIC {
		t.Fatalf("firewalled agent's address %s: want a public IPv4 block of type %d", addr, natlab.NATRestrictedPort)
	}
	for _, from := range []*agenttest.Agent{o, p} {
		steps, err := from.Plan(f.Addr(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range steps {
			t.Logf("plan: %s run=%v: %s", st.Strategy, st.Run, st.Why)
			if st.Strategy == node.Direct && (st.Run || !strings.Contains(st.Why, "the peer's IPv4 firewall filters")) {
				t.Errorf("direct step %+v: want it skipped for the peer's IPv4 firewall", st)
			}
		}
	}
	t.Run("open to firewalled: reverse", func(t *testing.T) { connect(t, o, f, node.Reverse) })
	t.Run("firewalled to open: direct", func(t *testing.T) { connect(t, f, o, node.Direct) })
	t.Run("NATed to firewalled: punch", func(t *testing.T) { connect(t, p, f, node.KindPunch) })
}
