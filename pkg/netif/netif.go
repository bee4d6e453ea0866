// Package netif finds a machine's usable network interfaces, groups their
// addresses into P2PD routes (NIC addresses -> external address), and
// serialises them in P2PD's Interface/Route JSON shape.
//
// Route rules (P2PD v3): IPv4 private addresses form one route whose external
// address is resolved from the first of them; each public IPv4 address is
// resolved on its own. IPv6 link-local and unique-local addresses are shared
// by all routes (the link_local_ips list); each global IPv6 address is its own
// route. A route is public when its external address equals its NIC address.
package netif

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"
)

// Address family numbers as P2PD writes them on the wire, whatever the OS.
const (
	AF4 = 2
	AF6 = 10
)

// DefaultSkip matches interface names that are never useful for peers:
// container, VPN-less virtual and bridge devices, named as this OS names
// them (see skip_*.go).
var DefaultSkip = regexp.MustCompile(defaultSkip)

// Options filters the interfaces List returns.
type Options struct {
	// Only, when non-empty, keeps just these interface names.
	Only []string
	// Skip drops names it matches; nil means DefaultSkip.
	Skip *regexp.Regexp
}

// NIC is an interface with its addresses, before any external lookup.
type NIC struct {
	Name  string
	Index int
	MAC   string
	Addrs []netip.Prefix
	// Default is true per address family (AF4, AF6) where this interface
	// holds the namespace's default route.
	Default map[int]bool
}

// List returns the up, non-loopback interfaces that have at least one usable
// address, sorted by name. It reads the network namespace of the calling
// thread.
func List(opts Options) ([]NIC, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("netif: %w", err)
	}
	skip := opts.Skip
	if skip == nil {
		skip = DefaultSkip
	}
	defaults := defaultInterfaces()
	var out []NIC
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if len(opts.Only) > 0 && !contains(opts.Only, ifc.Name) {
			continue
		}
		if len(opts.Only) == 0 && skip.MatchString(ifc.Name) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("netif: addresses of %s: %w", ifc.Name, err)
		}
		n := NIC{Name: ifc.Name, Index: ifc.Index, MAC: ifc.HardwareAddr.String(),
			Default: map[int]bool{AF4: defaults[AF4][ifc.Name], AF6: defaults[AF6][ifc.Name]}}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			n.Addrs = append(n.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
		}
		if len(n.Addrs) > 0 {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(opts.Only) > 0 && len(out) < len(opts.Only) {
		return out, fmt.Errorf("netif: interfaces %s: some are missing, down or have no address", strings.Join(opts.Only, ","))
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// kind classifies an address for route building.
type kind int

const (
	kindSkip kind = iota
	kindLocal6
	kindPrivate
	kindPublic
)

func classify(a netip.Addr) kind {
	switch {
	case a.IsLoopback() || a.IsUnspecified() || a.IsMulticast():
		return kindSkip
	case a.Is6() && (a.IsLinkLocalUnicast() || a.IsPrivate()):
		return kindLocal6
	case a.Is4() && (a.IsPrivate() || a.IsLinkLocalUnicast() || cgnat.Contains(a)):
		return kindPrivate
	}
	return kindPublic
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")
