package agent

import (
	"context"
	"net/netip"

	"github.com/p2pd-go/p2pd/pkg/nat"
	"github.com/p2pd-go/p2pd/pkg/netif"
)

// natInfo converts a pkg/nat result to the interface's NAT record.
func natInfo(t nat.Type, d nat.Delta, mapping, filtering nat.Class) netif.NAT {
	return netif.NAT{
		Type: int(t), Info: t.String(),
		Delta: netif.Delta{Type: int(d.Type), Value: d.Value}, DeltaInfo: d.Type.String(),
		Mapping: string(mapping), Filtering: string(filtering),
	}
}

// defaultNAT is what P2PD assumes when the NAT was not measured.
var defaultNAT = natInfo(nat.RestrictPortNAT, nat.Delta{Type: nat.DeltaRandom}, "", "")

// openNAT describes a route whose external address is its own and that
// nothing filters.
var openNAT = natInfo(nat.OpenInternet, nat.Delta{Type: nat.DeltaNA}, nat.EndpointIndependent, nat.EndpointIndependent)

// A route with no translation (a public IPv4 address on the NIC, a global
// IPv6 address) is open only if nothing filters it: a host or ISP firewall
// that drops inbound connections it has no state for makes peers that
// dial it time out. So such a route is profiled like a NATed one (pkg/nat's
// change-IP and change-port requests measure the filtering) and its block
// carries the type the filtering gives (docs/agent.md, "Filtering without
// NAT"): open (1) only for endpoint-independent filtering, restrict (4)
// for address-dependent, restrict-port (5) for address-and-port-dependent,
// blocked (7) where no UDP gets through; the delta is equal (2), because
// no translation keeps the port.

// defaultFirewallNAT is assumed when an untranslated route's filtering
// cannot be measured (no STUN server with an alternate address, no answer,
// profiling off): a firewall that admits only replies, as most have. A
// peer then punches or has us connect back instead of dialling into a
// filter and timing out; both get through an open host as well.
var defaultFirewallNAT = natInfo(nat.RestrictPortNAT, nat.Delta{Type: nat.DeltaEqual}, nat.EndpointIndependent, "")

// untranslatedNAT turns a measured profile of a route that has no
// translation into its record: a route that is translated after all keeps
// what was measured; one whose filtering could not be told (the server
// has no alternate address) takes defaultFirewallNAT; one that nothing
// filters is openNAT.
func untranslatedNAT(n netif.NAT) netif.NAT {
	switch {
	case n.Type != int(nat.OpenInternet):
		return n
	case n.Filtering == string(nat.EndpointIndependent):
		return openNAT
	}
	return defaultFirewallNAT
}

// stunProfiler measures NATs with pkg/nat against the configured servers
// that share the local address's family.
func (a *Agent) stunProfiler() Profiler {
	return func(ctx context.Context, local netip.Addr) (netif.NAT, error) {
		var servers []netip.AddrPort
		for _, s := range a.cfg.STUNServers {
			if s.Addr().Is4() == local.Is4() {
				servers = append(servers, s)
			}
		}
		r, err := nat.Profile(ctx, nat.Config{Servers: servers, Local: local, Net: a.cfg.Net})
		if err != nil {
			return netif.NAT{}, err
		}
		return natInfo(r.Type, r.Delta, r.Mapping, r.Filtering), nil
	}
}

// addressNAT is the NAT as a peer address block carries it: P2PD's address
// has no "unknown", so an unmeasured type or delta takes P2PD's defaults
// (port-restricted cone, random delta).
func addressNAT(n netif.NAT) (natType, deltaType, deltaValue int) {
	natType, deltaType, deltaValue = n.Type, n.Delta.Type, n.Delta.Value
	if natType < 1 || natType > 7 {
		natType = int(nat.RestrictPortNAT)
	}
	if deltaType < 1 || deltaType > 6 {
		deltaType, deltaValue = int(nat.DeltaRandom), 0
	}
	return natType, deltaType, deltaValue
}
