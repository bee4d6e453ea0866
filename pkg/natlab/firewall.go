package natlab

import (
	"fmt"
	"net/netip"
	"strings"
)

// A server, or a host whose ISP routes it a public IPv4 address, has no
// translation but often a firewall (the host's own, or the ISP's) that
// drops inbound connections it has no state for. A router made by
// AddFirewall is that firewall: each of its hosts gets a public address of
// its own from the lab's WAN prefix, routed to it as a /32 (the router
// answers ARP for it on the WAN: proxy ARP, so no other lab host needs a
// route), and the router's forward chain filters what comes in from the
// WAN with the filtering class of its behaviour, the same rules as the
// IPv6 firewall of AddRouter6. Nothing is translated. Its hosts also get
// global IPv6 addresses behind the same filtering, as AddRouter6's do.

// AddFirewall adds a router whose hosts have public IPv4 (and global IPv6)
// addresses behind a stateful firewall with b's filtering class, with no
// NAT: what a correct detector reports for them is b.Truth6 for both
// families. An Open firewall filters nothing, so for Open it is AddRouter.
func (l *Lab) AddFirewall(name string, b Behaviour, link ...Link) *Router {
	l.t.Helper()
	if b == Open {
		return l.AddRouter(name, b, link...)
	}
	return l.addRouter(name, b, true, true, link)
}

// IsFirewall reports whether the router routes public addresses to its
// hosts without translation (AddFirewall).
func (r *Router) IsFirewall() bool { return r.fw }

// setupFirewall lets the router answer ARP on the WAN for its hosts'
// public addresses, at once (proxied answers are otherwise delayed).
func (r *Router) setupFirewall() {
	l := r.lab
	l.t.Helper()
	_, err := inNS(r.ns, nil, "sysctl", "-qw", "net.ipv4.conf.wan.proxy_arp=1", "net.ipv4.neigh.wan.proxy_delay=0")
	l.must(err)
}

// addPublicHost gives h a public WAN address as a /32 with a default route
// via the router's LAN address, and routes that address to it.
func (r *Router) addPublicHost(h *Host) {
	l := r.lab
	l.t.Helper()
	a := l.alloc(false)
	h.addrs = []netip.Addr{a}
	l.must(addAddr(h.ns, "eth0", a, 32))
	l.must(run("ip", "-n", h.ns, "route", "add", "default", "via", r.lanGateway().String(), "dev", "eth0", "onlink"))
	l.must(run("ip", "-n", r.ns, "route", "add", a.String()+"/32", "dev", "lan"))
}

// filterRuleset is a non-translating firewall for one family (IPv6 of v6
// routers, IPv4 of firewall routers): conntrack's established state passes
// replies (and the second SYN of a simultaneous open, which conntrack sees
// as a reply), so a forward chain that drops every other inbound packet is
// address-and-port-dependent filtering. Restricted cone adds a set of
// (inside endpoint, remote address) pairs learned from outbound packets:
// address-dependent. Full cone filters nothing (with no translation that
// is open internet). UDP-blocked drops UDP both ways. Inbound ICMP passes.
func (r *Router) filterRuleset(v6 bool) string {
	fam, addr, icmp, table := "ip", "ip", "icmp", "natlab"
	if v6 {
		fam, addr, icmp, table = "ip6", "ip6", "ipv6-icmp", "natlab6"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", fam, table)
	if r.b == RestrictedCone {
		fmt.Fprintf(&b, "  set peers { typeof meta l4proto . %[1]s saddr . th sport . %[1]s daddr; flags dynamic,timeout; timeout %[2]s; }\n", addr, mappingTimeout)
	}
	fmt.Fprintf(&b, "  chain forward {\n    type filter hook forward priority filter; policy accept;\n")
	if r.b == UDPBlocked {
		fmt.Fprintf(&b, "    meta l4proto udp drop\n")
	}
	if r.b == RestrictedCone {
		fmt.Fprintf(&b, "    oifname \"wan\" meta l4proto { tcp, udp } update @peers { meta l4proto . %[1]s saddr . th sport . %[1]s daddr }\n", addr)
	}
	if r.b != FullCone {
		fmt.Fprintf(&b, "    iifname \"wan\" ct state established,related accept\n")
		fmt.Fprintf(&b, "    iifname \"wan\" meta l4proto %s accept\n", icmp)
		if r.b == RestrictedCone {
			fmt.Fprintf(&b, "    iifname \"wan\" meta l4proto { tcp, udp } meta l4proto . %[1]s daddr . th dport . %[1]s saddr @peers accept\n", addr)
		}
		fmt.Fprintf(&b, "    iifname \"wan\" drop\n")
	}
	fmt.Fprintf(&b, "  }\n}\n")
	return b.String()
}
