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

// openNAT describes a route whose external address is its own.
var openNAT = natInfo(nat.OpenInternet, nat.Delta{Type: nat.DeltaNA}, nat.EndpointIndependent, nat.EndpointIndependent)

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
