package agent_test

import (
	"testing"

	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/netif"
)

// TestLabIPv6Filtering: an agent measures its IPv6 route's filtering
// against stund's two IPv6 addresses and advertises the type it gives:
// behind a filtering firewall the IPv6 block is no longer "open".
func TestLabIPv6Filtering(t *testing.T) {
	lab := natlab.New(t)
	s := agenttest.NewStack6(t, lab, agenttest.MQTTD)
	for _, b := range []natlab.Behaviour{natlab.Open, natlab.FullCone, natlab.RestrictedCone, natlab.PortRestrictedCone, natlab.Symmetric} {
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
			if n.Type != truth.NATType || n.Filtering != string(truth.Filtering) {
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
