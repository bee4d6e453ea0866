package netif

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
)

// Resolver finds the external address seen for traffic from a local address
// (STUN, with several servers agreeing).
type Resolver interface {
	ExternalIP(ctx context.Context, local netip.Addr) (netip.Addr, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, local netip.Addr) (netip.Addr, error)

// ExternalIP calls f.
func (f ResolverFunc) ExternalIP(ctx context.Context, local netip.Addr) (netip.Addr, error) {
	return f(ctx, local)
}

// Route maps NIC addresses to the external address they reach the world as.
type Route struct {
	AF        int
	NIC       []netip.Prefix
	Ext       []netip.Addr
	LinkLocal []netip.Prefix
}

// NICIP is the route's first NIC address (the one to bind).
func (r Route) NICIP() netip.Addr { return r.NIC[0].Addr() }

// ExtIP is the route's external address.
func (r Route) ExtIP() netip.Addr { return r.Ext[0] }

// Public reports whether the external address is the NIC's own (no NAT).
func (r Route) Public() bool {
	for _, p := range r.NIC {
		if p.Addr() == r.ExtIP() {
			return true
		}
	}
	return false
}

// BuildRoutes groups a NIC's addresses into routes per address family,
// resolving the external address of each route concurrently. A route whose
// resolution fails is left out; the error lists every failure and is returned
// together with the routes that worked.
func BuildRoutes(ctx context.Context, nic NIC, res Resolver) (map[int][]Route, error) {
	var private4, public4, global6, local6 []netip.Prefix
	for _, p := range nic.Addrs {
		a := p.Addr()
		switch classify(a) {
		case kindLocal6:
			local6 = append(local6, p)
		case kindPrivate:
			private4 = append(private4, p)
		case kindPublic:
			if a.Is4() {
				public4 = append(public4, p)
			} else {
				global6 = append(global6, p)
			}
		}
	}
	type job struct {
		af  int
		nic []netip.Prefix
	}
	var jobs []job
	if len(private4) > 0 {
		jobs = append(jobs, job{AF4, private4})
	}
	for _, p := range public4 {
		jobs = append(jobs, job{AF4, []netip.Prefix{p}})
	}
	for _, p := range global6 {
		jobs = append(jobs, job{AF6, []netip.Prefix{p}})
	}
	routes := make([]*Route, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ext, err := res.ExternalIP(ctx, j.nic[0].Addr())
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", j.nic[0].Addr(), err)
				return
			}
			r := &Route{AF: j.af, NIC: j.nic, Ext: []netip.Addr{ext}}
			if j.af == AF6 {
				r.LinkLocal = local6
			}
			routes[i] = r
		}()
	}
	wg.Wait()
	out := map[int][]Route{AF4: {}, AF6: {}}
	var failed []error
	for i, r := range routes {
		if r == nil {
			failed = append(failed, errs[i])
			continue
		}
		out[r.AF] = append(out[r.AF], *r)
	}
	for af := range out {
		rs := out[af]
		sort.Slice(rs, func(i, j int) bool { return rs[i].ExtIP().Less(rs[j].ExtIP()) })
	}
	if len(failed) > 0 {
		return out, fmt.Errorf("netif: %s: resolving external addresses: %v", nic.Name, failed)
	}
	return out, nil
}
