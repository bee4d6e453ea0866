package portmap

import "net/netip"

// route4 is one IPv4 routing-table entry as a BSD routing socket reports
// it (gateway_bsd.go converts them); pickDefault is kept apart from the
// socket so it is tested on every OS.
type route4 struct {
	dst    netip.Addr // destination
	mask   netip.Addr // netmask; invalid when the entry has none (a host or default route)
	gw     netip.Addr // next hop; invalid for an interface (link-layer) route
	up     bool       // RTF_UP
	viaGW  bool       // RTF_GATEWAY
	scoped bool       // macOS RTF_IFSCOPE: a per-interface copy
}

// pickDefault returns the next hop of the default route, preferring an
// unscoped route to an interface-scoped one (macOS keeps one scoped default
// per interface besides the one the system uses).
func pickDefault(routes []route4) (netip.Addr, error) {
	var scoped netip.Addr
	for _, r := range routes {
		isDefault := r.dst == netip.IPv4Unspecified() && (!r.mask.IsValid() || r.mask == netip.IPv4Unspecified())
		if !r.up || !r.viaGW || !isDefault || !r.gw.Is4() {
			continue
		}
		if !r.scoped {
			return r.gw, nil
		}
		if !scoped.IsValid() {
			scoped = r.gw
		}
	}
	if scoped.IsValid() {
		return scoped, nil
	}
	return netip.Addr{}, ErrNoGateway
}
