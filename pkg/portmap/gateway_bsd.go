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
// (sysctl NET_RT_DUMP) and returns the gateway of the default route,
// preferring an unscoped route to an interface-scoped one.
func defaultGateway() (netip.Addr, error) {
	rib, err := route.FetchRIB(syscall.AF_INET, route.RIBTypeRoute, 0)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: routes: %w", err)
	}
	msgs, err := route.ParseRIB(route.RIBTypeRoute, rib)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: parse routes: %w", err)
	}
	var scoped netip.Addr
	for _, m := range msgs {
		rm, ok := m.(*route.RouteMessage)
		if !ok || rm.Flags&unix.RTF_UP == 0 || rm.Flags&unix.RTF_GATEWAY == 0 || len(rm.Addrs) <= unix.RTAX_GATEWAY {
			continue
		}
		if dst, ok := rm.Addrs[unix.RTAX_DST].(*route.Inet4Addr); !ok || dst.IP != [4]byte{} {
			continue
		}
		if len(rm.Addrs) > unix.RTAX_NETMASK {
			if mask, ok := rm.Addrs[unix.RTAX_NETMASK].(*route.Inet4Addr); ok && mask.IP != [4]byte{} {
				continue // a route to 0.0.0.0/8 or similar, not the default
			}
		}
		gw, ok := rm.Addrs[unix.RTAX_GATEWAY].(*route.Inet4Addr)
		if !ok {
			continue // an interface route (link address), no next hop
		}
		a := netip.AddrFrom4(gw.IP)
		if rm.Flags&scopedRoute == 0 {
			return a, nil
		}
		if !scoped.IsValid() {
			scoped = a
		}
	}
	if scoped.IsValid() {
		return scoped, nil
	}
	return netip.Addr{}, ErrNoGateway
}
