package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
)

// maxBlocks is how many interfaces per family a peer address carries.
const maxBlocks = 4

// loadInterfaces lists the NICs, resolves their routes and NAT, and builds
// the peer address. Interfaces that get no route are left out (and logged);
// it fails only when none is usable.
func (a *Agent) loadInterfaces(ctx context.Context) error {
	nics := a.cfg.NICs
	if nics == nil {
		var err error
		if nics, err = netif.List(a.cfg.Interfaces); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	var ifs []netif.Interface
	var problems []error
	for _, nic := range nics {
		routes, err := netif.BuildRoutes(ctx, nic, a.resolver())
		if err != nil {
			problems = append(problems, err)
			a.cfg.Log.Warn("interface partly resolved", "if", nic.Name, "err", err)
		}
		if len(routes[netif.AF4]) == 0 && len(routes[netif.AF6]) == 0 {
			continue
		}
		ifc := netif.Interface{Name: nic.Name, Index: len(ifs), OSIndex: nic.Index, MAC: nic.MAC,
			IsDefault: map[int]bool{netif.AF4: nic.Default[netif.AF4], netif.AF6: nic.Default[netif.AF6]}, Routes: routes, NAT: defaultNAT}
		var nat6 netif.NAT
		done6 := make(chan struct{})
		go func() { // the IPv6 profile runs beside the IPv4 one
			defer close(done6)
			if r6 := routes[netif.AF6]; len(r6) > 0 {
				nat6 = a.interfaceNAT6(ctx, nic, r6[0])
				ifc.NAT6 = &nat6
			}
		}()
		if r4 := routes[netif.AF4]; len(r4) > 0 {
			ifc.NAT = a.interfaceNAT(ctx, nic, r4[0])
		}
		<-done6
		if len(routes[netif.AF4]) == 0 {
			ifc.NAT = nat6 // IPv6 only: its filtering is the interface's NAT
		}
		ifs = append(ifs, ifc)
	}
	if len(ifs) == 0 {
		return fmt.Errorf("agent: no usable interface (no external address found): %w", errors.Join(problems...))
	}
	addr := peeraddr.Address{Signal: a.offsets, NodeID: a.ID()}
	for _, ifc := range ifs {
		for _, af := range []int{netif.AF4, netif.AF6} {
			rs := ifc.Routes[af]
			if len(rs) == 0 {
				continue
			}
			nat := ifc.NAT // measured, for a public route too (its filtering)
			if af == netif.AF6 {
				nat = *ifc.NAT6
			}
			nt, dt, dv := addressNAT(nat)
			b := peeraddr.Block{IfIndex: ifc.Index, Ext: rs[0].ExtIP(), NIC: rs[0].NICIP(), Port: uint16(a.cfg.Port),
				NATType: nt, DeltaType: dt, DeltaValue: dv}
			if af == netif.AF4 && len(addr.IPv4) < maxBlocks {
				addr.IPv4 = append(addr.IPv4, b)
			} else if af == netif.AF6 && len(addr.IPv6) < maxBlocks {
				addr.IPv6 = append(addr.IPv6, b)
			}
		}
	}
	if err := addr.Validate(); err != nil {
		return fmt.Errorf("agent: own address: %w", err)
	}
	a.mu.Lock()
	a.ifs, a.addr = ifs, addr
	a.mu.Unlock()
	return nil
}
