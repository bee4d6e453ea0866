package natlab

import (
	"fmt"
	"net/netip"
	"strings"
)

// Router is a NAT (or open) router between the WAN and private hosts.
type Router struct {
	*Host // the router's own namespace
	b     Behaviour
	index int
	wan   netip.Addr
	hosts int
	v6    bool       // routes global IPv6 to its hosts (AddRouter6)
	wan6  netip.Addr // its IPv6 WAN address (v6 routers)
	fw    bool       // routes public IPv4 addresses to its hosts, filtered, untranslated (AddFirewall)
}

// SequentialBase and SequentialPorts describe the external ports a
// SymmetricSequential router hands out: BASE, BASE+1, ... wrapping after N.
const (
	SequentialBase  = 20000
	SequentialPorts = 2000
)

// mappingTimeout is how long the emulated cone NATs remember a mapping after
// its last outbound packet.
const mappingTimeout = "120s"

// AddRouter adds a router with behaviour b. Hosts added to an Open router sit
// on the WAN with public addresses; hosts added to a NAT router get
// 10.<n>.0.<k> behind its single public IPv4 address.
func (l *Lab) AddRouter(name string, b Behaviour, link ...Link) *Router {
	l.t.Helper()
	return l.addRouter(name, b, false, false, link)
}

func (l *Lab) addRouter(name string, b Behaviour, v6, fw bool, link []Link) *Router {
	l.t.Helper()
	if b < Open || b > UDPBlocked {
		l.t.Fatalf("natlab: unknown behaviour %d", int(b))
	}
	var lk Link
	if len(link) > 0 {
		lk = link[0]
	}
	l.mu.Lock()
	l.routers++
	idx := l.routers
	l.mu.Unlock()

	r := &Router{Host: &Host{lab: l, name: name, ns: l.addNS(name)}, b: b, index: idx, v6: v6, fw: fw}
	l.must(l.connectWAN(r.ns, "wan", lk))
	l.must(run("ip", "-n", r.ns, "link", "add", "lan", "type", "bridge"))
	l.must(run("ip", "-n", r.ns, "link", "set", "lan", "up"))
	if b == Open {
		// A plain bridge: hosts behind it are directly on the WAN.
		l.must(run("ip", "-n", r.ns, "link", "set", "wan", "master", "lan"))
		return r
	}
	r.wan = l.alloc(false)
	r.addrs = []netip.Addr{r.wan, r.lanGateway()}
	l.must(addAddr(r.ns, "wan", r.wan, 24))
	l.must(addAddr(r.ns, "lan", r.lanGateway(), 24))
	_, err := inNS(r.ns, nil, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.must(err)
	rules := r.ruleset()
	if fw {
		rules = r.filterRuleset(false)
		r.setupFirewall()
	}
	_, err = inNS(r.ns, []byte(rules), "nft", "-f", "-")
	l.must(err)
	if v6 {
		r.setup6()
	}
	return r
}

// Behaviour is the router's NAT behaviour.
func (r *Router) Behaviour() Behaviour { return r.b }

// WANAddr is the router's public IPv4 address (zero for an Open router,
// whose hosts have their own public addresses; a firewall's hosts have
// their own too, and this is only the router's).
func (r *Router) WANAddr() netip.Addr { return r.wan }

func (r *Router) lanGateway() netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(r.index), 0, 1})
}

// AddHost adds a private host behind the router.
func (r *Router) AddHost(name string) *Host {
	l := r.lab
	l.t.Helper()
	r.hosts++
	h := &Host{lab: l, name: name, ns: l.addNS(name)}
	port := fmt.Sprintf("h%d", r.hosts)
	l.must(run("ip", "link", "add", "name", port, "netns", r.ns, "type", "veth", "peer", "name", "eth0", "netns", h.ns))
	l.must(run("ip", "-n", r.ns, "link", "set", port, "master", "lan", "up"))
	l.must(run("ip", "-n", h.ns, "link", "set", "eth0", "up"))
	l.must(waitUp(h.ns, "eth0"))
	if r.b == Open {
		h.addrs = []netip.Addr{l.alloc(false), l.alloc(true)}
		for _, a := range h.addrs {
			l.must(addAddr(h.ns, "eth0", a, wanBits(a)))
		}
		l.must(l.joinWAN6(h.ns, netip.Prefix{}, netip.Addr{}))
		return h
	}
	if r.fw {
		r.addPublicHost(h)
	} else {
		a := netip.AddrFrom4([4]byte{10, byte(r.index), 0, byte(9 + r.hosts)})
		h.addrs = []netip.Addr{a}
		l.must(addAddr(h.ns, "eth0", a, 24))
		l.must(run("ip", "-n", h.ns, "route", "add", "default", "via", r.lanGateway().String()))
	}
	if r.v6 {
		a6 := nthAddr(r.lanPrefix6(), 9+r.hosts)
		h.addrs = append(h.addrs, a6)
		l.must(addAddr(h.ns, "eth0", a6, 64))
		l.must(run("ip", "-n", h.ns, "-6", "route", "add", "default", "via", r.lanGateway6().String()))
	}
	return h
}

// ruleset is the router's nftables program for its behaviour.
func (r *Router) ruleset() string {
	var b strings.Builder
	w := r.wan.String()
	fmt.Fprintf(&b, "table ip natlab {\n")
	cone := r.b == FullCone || r.b == RestrictedCone
	if cone {
		// Learn each mapping after SNAT: external port -> inside address and
		// port, plus (restricted cone) the remote addresses it has contacted.
		fmt.Fprintf(&b, "  map map_addr { typeof meta l4proto . th dport : ip daddr; flags dynamic,timeout; timeout %s; }\n", mappingTimeout)
		fmt.Fprintf(&b, "  map map_port { typeof meta l4proto . th dport : th dport; flags dynamic,timeout; timeout %s; }\n", mappingTimeout)
		fmt.Fprintf(&b, "  set peers { typeof meta l4proto . th dport . ip saddr; flags dynamic,timeout; timeout %s; }\n", mappingTimeout)
	}
	fmt.Fprintf(&b, "  chain postnat {\n    type nat hook postrouting priority srcnat; policy accept;\n")
	switch r.b {
	case Symmetric:
		fmt.Fprintf(&b, "    oifname \"wan\" snat to %s fully-random\n", w)
	case SymmetricSequential:
		elems := make([]string, SequentialPorts)
		for i := range elems {
			elems[i] = fmt.Sprintf("%d : %d", i, SequentialBase+i)
		}
		fmt.Fprintf(&b, "    oifname \"wan\" meta l4proto { tcp, udp } snat to %s : numgen inc mod %d map { %s }\n", w, SequentialPorts, strings.Join(elems, ", "))
		fmt.Fprintf(&b, "    oifname \"wan\" snat to %s\n", w)
	default:
		fmt.Fprintf(&b, "    oifname \"wan\" snat to %s\n", w)
	}
	fmt.Fprintf(&b, "  }\n")
	if cone {
		fmt.Fprintf(&b, "  chain learn {\n    type filter hook postrouting priority srcnat + 1; policy accept;\n")
		fmt.Fprintf(&b, "    oifname \"wan\" meta l4proto { tcp, udp } update @map_addr { meta l4proto . th sport : ct original ip saddr }\n")
		fmt.Fprintf(&b, "    oifname \"wan\" meta l4proto { tcp, udp } update @map_port { meta l4proto . th sport : ct original proto-src }\n")
		fmt.Fprintf(&b, "    oifname \"wan\" meta l4proto { tcp, udp } update @peers { meta l4proto . th sport . ip daddr }\n")
		fmt.Fprintf(&b, "  }\n")
		fmt.Fprintf(&b, "  chain prenat {\n    type nat hook prerouting priority dstnat; policy accept;\n")
		match := ""
		if r.b == RestrictedCone {
			match = "meta l4proto . th dport . ip saddr @peers "
		}
		fmt.Fprintf(&b, "    iifname \"wan\" ip daddr %s meta l4proto { tcp, udp } %sdnat to meta l4proto . th dport map @map_addr : meta l4proto . th dport map @map_port\n", w, match)
		fmt.Fprintf(&b, "  }\n")
	}
	if r.b == UDPBlocked {
		fmt.Fprintf(&b, "  chain forward {\n    type filter hook forward priority filter; policy accept;\n    meta l4proto udp drop\n  }\n")
	}
	fmt.Fprintf(&b, "}\n")
	return b.String()
}
