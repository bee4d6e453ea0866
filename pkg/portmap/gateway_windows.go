package portmap

import (
	"fmt"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// defaultGateway reads the IPv4 routing table through iphlpapi
// (GetIpForwardTable2) and returns the next hop of the default route with
// the lowest effective metric (route metric plus interface metric, the sum
// Windows itself compares).
func defaultGateway() (netip.Addr, error) {
	var table *windows.MibIpForwardTable2
	if err := windows.GetIpForwardTable2(windows.AF_INET, &table); err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: routes: %w", err)
	}
	defer windows.FreeMibTable(unsafe.Pointer(table))
	var best netip.Addr
	var bestMetric uint64
	for _, r := range table.Rows() {
		if r.DestinationPrefix.PrefixLength != 0 || r.NextHop.Family != windows.AF_INET {
			continue
		}
		nh := netip.AddrFrom4((*windows.RawSockaddrInet4)(unsafe.Pointer(&r.NextHop)).Addr)
		if nh.IsUnspecified() {
			continue // on-link default route: no gateway to ask
		}
		metric := uint64(r.Metric)
		ifRow := windows.MibIpInterfaceRow{Family: windows.AF_INET, InterfaceLuid: r.InterfaceLuid}
		if haveInterfaceEntry() && windows.GetIpInterfaceEntry(&ifRow) == nil {
			metric += uint64(ifRow.Metric)
		}
		if !best.IsValid() || metric < bestMetric {
			best, bestMetric = nh, metric
		}
	}
	if !best.IsValid() {
		return netip.Addr{}, ErrNoGateway
	}
	return best, nil
}

// haveInterfaceEntry reports whether iphlpapi has GetIpInterfaceEntry
// (Windows does; Wine 8 does not, and calling a missing procedure through
// x/sys/windows panics). Without it routes are compared by their own metric.
var haveInterfaceEntry = sync.OnceValue(func() bool {
	return windows.NewLazySystemDLL("iphlpapi.dll").NewProc("GetIpInterfaceEntry").Find() == nil
})
