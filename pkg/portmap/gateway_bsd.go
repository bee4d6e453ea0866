//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package portmap

import (
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/net/route"
	"golang.org/x/sys/unix"
)

// defaultGateway reads the IPv4 routing table from a routing socket
// (sysctl NET_RT_DUMP) and picks the default route's gateway (pickDefault).
func defaultGateway() (netip.Addr, error) {
	rib, err := route.FetchRIB(syscall.AF_INET, route.RIBTypeRoute, 0)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: routes: %w", err)
	}
	msgs, err := route.ParseRIB(route.RIBTypeRoute, rib)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: parse routes: %w", err)
	}
	var routes []route4
	for _, m := range msgs {
		rm, ok := m.(*route.RouteMessage)
		if !ok || len(rm.Addrs) <= unix.RTAX_GATEWAY {
			continue
		}
		r := route4{
			dst:    inet4(rm.Addrs[unix.RTAX_DST]),
			gw:     inet4(rm.Addrs[unix.RTAX_GATEWAY]),
			up:     rm.Flags&unix.RTF_UP != 0,
			viaGW:  rm.Flags&unix.RTF_GATEWAY != 0,
			scoped: rm.Flags&scopedRoute != 0,
		}
		if len(rm.Addrs) > unix.RTAX_NETMASK {
			r.mask = inet4(rm.Addrs[unix.RTAX_NETMASK])
		}
		routes = append(routes, r)
	}
	return pickDefault(routes)
}

// inet4 is a as an IPv4 address, or the invalid Addr for anything else (a
// link-layer address, or none).
func inet4(a route.Addr) netip.Addr {
	if v, ok := a.(*route.Inet4Addr); ok {
		return netip.AddrFrom4(v.IP)
	}
	return netip.Addr{}
}
