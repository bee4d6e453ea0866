package portmap

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// defaultGateway asks the kernel over netlink for the IPv4 default route of
// the calling thread's network namespace (the lab runs it inside one).
func defaultGateway() (netip.Addr, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: routes: %w", err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil {
			if a, ok := netip.AddrFromSlice(r.Gw.To4()); ok {
				return a, nil
			}
		}
	}
	return netip.Addr{}, ErrNoGateway
}
