package agent

import (
	"context"

	"github.com/p2pd-go/p2pd/pkg/netif"
)

// IPv6 is not translated where most hosts have it, but it is filtered: a
// home router's stateful firewall drops inbound connections it has no
// state for. So an IPv6 route is profiled like an untranslated IPv4 one
// (natprofile.go) against a stund with two IPv6 addresses; its block
// carries the type its filtering gives (docs/agent.md, "Filtering without
// NAT").

// interfaceNAT6 is the NAT record of an interface whose first IPv6 route
// is r6.
func (a *Agent) interfaceNAT6(ctx context.Context, nic netif.NIC, r6 netif.Route) netif.NAT {
	switch {
	case a.stunNote(r6.NICIP()) == stunUDPBlocked:
		return blockedNAT
	case a.stunNote(r6.NICIP()) == stunNone, a.cfg.SkipNATProfile:
		return defaultFirewallNAT
	}
	profile := a.cfg.Profile
	if profile == nil {
		profile = a.stunProfiler()
	}
	n, err := profile(ctx, r6.NICIP())
	if err != nil {
		a.cfg.Log.Warn("IPv6 filtering not measured; assuming a stateful firewall (restrict-port)", "if", nic.Name, "err", err)
		return defaultFirewallNAT
	}
	return untranslatedNAT(n)
}
