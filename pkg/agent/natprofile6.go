package agent

import (
	"context"

	"github.com/p2pd-go/p2pd/pkg/nat"
	"github.com/p2pd-go/p2pd/pkg/netif"
)

// IPv6 is not translated where most hosts have it, but it is filtered: a
// home router's stateful firewall drops inbound connections it has no
// state for. So an IPv6 route is profiled like an IPv4 one (pkg/nat against
// a stund with two IPv6 addresses: change-IP and change-port requests
// measure the filtering), and its block carries the type the filtering
// gives (docs/agent.md, "IPv6 filtering types"): open (1) only for endpoint-independent
// filtering, restrict (4) for address-dependent, restrict-port (5) for
// address-and-port-dependent, blocked (7) where no UDP gets through; the
// delta is equal (2), because no translation keeps the port.

// defaultNAT6 is assumed when an IPv6 route's filtering cannot be measured
// (no STUN server with an alternate address, no answer, profiling off):
// a firewall that admits only replies, as most IPv6 routers have. A peer
// then punches instead of dialling into a filter and timing out; a punch
// gets through an open host as well.
var defaultNAT6 = natInfo(nat.RestrictPortNAT, nat.Delta{Type: nat.DeltaEqual}, nat.EndpointIndependent, "")

// interfaceNAT6 is the NAT record of an interface whose first IPv6 route
// is r6.
func (a *Agent) interfaceNAT6(ctx context.Context, nic netif.NIC, r6 netif.Route) netif.NAT {
	switch {
	case a.stunNote(r6.NICIP()) == stunUDPBlocked:
		return blockedNAT
	case a.stunNote(r6.NICIP()) == stunNone, a.cfg.SkipNATProfile:
		return defaultNAT6
	}
	profile := a.cfg.Profile
	if profile == nil {
		profile = a.stunProfiler()
	}
	n, err := profile(ctx, r6.NICIP())
	if err != nil {
		a.cfg.Log.Warn("IPv6 filtering not measured; assuming a stateful firewall (restrict-port)", "if", nic.Name, "err", err)
		return defaultNAT6
	}
	return nat6(n)
}

// nat6 turns a measured profile of an IPv6 route into its record: a route
// that is translated after all (NAT66) keeps what was measured; one whose
// filtering could not be told (the server has no alternate address) takes
// defaultNAT6; an open one is open with no delta, as IPv4 public routes are.
func nat6(n netif.NAT) netif.NAT {
	switch {
	case n.Type != int(nat.OpenInternet):
		return n
	case n.Filtering == string(nat.EndpointIndependent):
		return openNAT
	}
	return defaultNAT6
}
