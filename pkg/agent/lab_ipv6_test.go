package agent_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/clock"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/node"
)

// TestLabIPv6Filtering: an agent measures its IPv6 route's filtering
// against stund's two IPv6 addresses and advertises the type it gives:
// behind a filtering firewall the IPv6 block is no longer "open", and
// behind one that drops UDP it says blocked (7), as IPv4 does.
func TestLabIPv6Filtering(t *testing.T) {
	lab := natlab.New(t)
	s := agenttest.NewStack6(t, lab, agenttest.MQTTD)
	for _, b := range []natlab.Behaviour{natlab.Open, natlab.FullCone, natlab.RestrictedCone, natlab.PortRestrictedCone, natlab.Symmetric, natlab.UDPBlocked} {
		t.Run(b.String(), func(t *testing.T) {
			h := lab.AddRouter6("r-"+b.String(), b).AddHost("h-" + b.String())
			a := agenttest.StartAgent(t, h, s)
			truth := b.Truth6()
			ifc := a.Interfaces()[0]
			if len(ifc.Routes[netif.AF6]) == 0 || ifc.NAT6 == nil {
				t.Fatalf("no IPv6 route or IPv6 NAT record: %+v", ifc)
			}
			if got := ifc.Routes[netif.AF6][0].ExtIP(); got != h.IP6() {
				t.Errorf("IPv6 external address %s, want the host's own %s", got, h.IP6())
			}
			n := *ifc.NAT6
			t.Logf("IPv6 NAT record %+v; IPv4 %+v", n, ifc.NAT)
			wantFiltering := string(truth.Filtering)
			if b == natlab.UDPBlocked {
				wantFiltering = "" // not measured: no UDP answer
			}
			if n.Type != truth.NATType || n.Filtering != wantFiltering {
				t.Errorf("IPv6 NAT type %d filtering %q, want %d %q", n.Type, n.Filtering, truth.NATType, truth.Filtering)
			}
			addr, err := a.Address()
			if err != nil {
				t.Fatal(err)
			}
			if len(addr.IPv6) == 0 || addr.IPv6[0].NATType != truth.NATType {
				t.Errorf("address %s: want an IPv6 block of NAT type %d", addr, truth.NATType)
			}
		})
	}
}

// TestLabPunchIPv6: agents behind IPv6 firewalls that filter by address
// and port (no direct or reverse connect gets in) punch over IPv6, to the
// peer's known global address and node port, raced with the IPv4 punch.
// Behind symmetric IPv4 NATs with random ports no IPv4 punch can meet, so
// IPv6 must win; behind port-restricted cones both legs run and either may.
func TestLabPunchIPv6(t *testing.T) {
	for _, tt := range []struct {
		b     natlab.Behaviour
		nat4  int
		plan  string
		only6 bool
	}{
		{natlab.Symmetric, natlab.NATSymmetric, "over IPv6 only", true},
		{natlab.PortRestrictedCone, natlab.NATRestrictedPort, "over IPv4 and IPv6 at once", false},
	} {
		t.Run(tt.b.String(), func(t *testing.T) { punchPair6(t, tt.b, tt.nat4, tt.plan, tt.only6) })
	}
}

func punchPair6(t *testing.T, beh natlab.Behaviour, nat4 int, plan string, only6 bool) {
	lab := natlab.New(t)
	s := agenttest.NewStack6(t, lab, agenttest.MQTTD)
	link := natlab.Link{Delay: 10 * time.Millisecond}
	a := agenttest.StartAgent(t, lab.AddRouter6("ra", beh, link).AddHost("a"), s)
	b := agenttest.StartAgent(t, lab.AddRouter6("rb", beh, link).AddHost("b"), s)
	for _, x := range []*agenttest.Agent{a, b} {
		waitClock(t, x, clock.SourceNTP)
		addr, err := x.Address()
		if err != nil {
			t.Fatal(err)
		}
		if len(addr.IPv6) == 0 || addr.IPv6[0].NATType != natlab.NATRestrictedPort || len(addr.IPv4) == 0 || addr.IPv4[0].NATType != nat4 {
			t.Fatalf("address %s: want an IPv4 block of type %d and a restrict-port IPv6 block", addr, nat4)
		}
	}
	steps, err := a.Plan(b.Addr(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		t.Logf("plan: %s run=%v: %s", st.Strategy, st.Run, st.Why)
		if st.Strategy == node.KindPunch && (!st.Run || !strings.Contains(st.Why, plan)) {
			t.Errorf("punch step %+v: want it to run %s", st, plan)
		}
		if (st.Strategy == node.Direct || st.Strategy == node.Reverse) && st.Run {
			t.Errorf("%s would run: %s", st.Strategy, st.Why)
		}
	}
	for _, dir := range []struct {
		name     string
		from, to *agenttest.Agent
	}{{"a to b", a, b}, {"b to a", b, a}, {"a to b again", a, b}} {
		t.Run(dir.name, func(t *testing.T) {
			p := connect(t, dir.from, dir.to, node.KindPunch)
			remote, err := netip.ParseAddrPort(p.Report.Remote)
			if err != nil || remote.Addr().Is6() != p.RemoteAddr().Addr().Is6() {
				t.Errorf("report remote %q, pipe remote %s", p.Report.Remote, p.RemoteAddr())
			}
			t.Logf("punch won over %s", p.Report.Remote)
			// Two legs, one pipe: the peer got no second one.
			noSecondPipe(t, dir.to)
			if only6 && !remote.Addr().Is6() {
				t.Errorf("punched pipe to %s: want IPv6", p.Report.Remote)
			}
		})
	}
}
