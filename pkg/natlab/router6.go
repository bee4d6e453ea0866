package natlab

import "net/netip"

// IPv6 the way most homes have it: no translation, a stateful firewall. A
// router made by AddRouter6 routes a /64 of its own (2001:db8:0:<n>::/64)
// to its hosts, which get global addresses from it, and filters inbound
// IPv6 with the filtering class of its IPv4 behaviour (Truth6). Every WAN
// host with an IPv6 address gets a route to that /64 via the router's IPv6
// WAN address, so the addresses are reachable from anywhere in the lab,
// as far as the firewall lets them be.

// AddRouter6 is AddRouter whose hosts also get global IPv6 addresses behind
// the router's IPv6 firewall. An Open router's hosts are on the WAN anyway
// (with IPv6 addresses of their own), so for Open it is AddRouter.
func (l *Lab) AddRouter6(name string, b Behaviour, link ...Link) *Router {
	l.t.Helper()
	return l.addRouter(name, b, b != Open, false, link)
}

// WANAddr6 is a v6 router's IPv6 WAN address (zero otherwise).
func (r *Router) WANAddr6() netip.Addr { return r.wan6 }

// LANPrefix6 is the /64 a v6 router gives its hosts (zero otherwise).
func (r *Router) LANPrefix6() netip.Prefix {
	if !r.v6 {
		return netip.Prefix{}
	}
	return r.lanPrefix6()
}

func (r *Router) lanPrefix6() netip.Prefix {
	b := WANPrefix6.Addr().As16()
	b[6], b[7] = byte(r.index>>8), byte(r.index)
	return netip.PrefixFrom(netip.AddrFrom16(b), 64)
}

func (r *Router) lanGateway6() netip.Addr { return nthAddr(r.lanPrefix6(), 1) }

// setup6 gives the router its IPv6 addresses, forwarding and firewall, and
// announces its /64 to the WAN hosts.
func (r *Router) setup6() {
	l := r.lab
	l.t.Helper()
	r.wan6 = l.alloc(true)
	r.addrs = append(r.addrs, r.wan6, r.lanGateway6())
	l.must(addAddr(r.ns, "wan", r.wan6, wanBits(r.wan6)))
	l.must(addAddr(r.ns, "lan", r.lanGateway6(), 64))
	_, err := inNS(r.ns, nil, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	l.must(err)
	_, err = inNS(r.ns, []byte(r.filterRuleset(true)), "nft", "-f", "-")
	l.must(err)
	l.must(l.joinWAN6(r.ns, r.lanPrefix6(), r.wan6))
}

// joinWAN6 records a WAN namespace with an IPv6 address and installs the
// routes to every v6 router's /64 in it; a v6 router (prefix valid) also
// gets its own /64 routed via via in every other such namespace.
func (l *Lab) joinWAN6(ns string, prefix netip.Prefix, via netip.Addr) error {
	l.route6Mu.Lock()
	defer l.route6Mu.Unlock()
	for _, rt := range l.routes6 {
		if err := run("ip", "-n", ns, "-6", "route", "add", rt.prefix.String(), "via", rt.via.String()); err != nil {
			return err
		}
	}
	if prefix.IsValid() {
		for _, other := range l.wan6NS {
			if err := run("ip", "-n", other, "-6", "route", "add", prefix.String(), "via", via.String()); err != nil {
				return err
			}
		}
		l.routes6 = append(l.routes6, route6{prefix, via})
	}
	l.wan6NS = append(l.wan6NS, ns)
	return nil
}

// route6 is a v6 router's /64 and its next hop on the WAN.
type route6 struct {
	prefix netip.Prefix
	via    netip.Addr
}

// hasV6 reports whether addrs holds an IPv6 address.
func hasV6(addrs []netip.Addr) bool {
	for _, a := range addrs {
		if a.Is6() {
			return true
		}
	}
	return false
}

// Truth6 is what a correct detector must report for UDP over IPv6 from a
// host behind a v6 router (AddRouter6): no translation, so the mapping is
// endpoint-independent and keeps the port, and the P2PD type follows from
// the filtering alone (docs/agent.md, "Filtering without NAT"): open for
// none (open and full-cone routers), restrict (4) for address-dependent, restrict-port (5)
// for address-and-port-dependent (port-restricted and symmetric routers),
// blocked (7) where UDP is dropped. It is also the truth for both families
// from a host behind a firewall router (AddFirewall), which filters the
// same way and translates nothing.
func (b Behaviour) Truth6() Truth {
	switch b {
	case Open, FullCone:
		return Truth{NATOpen, EndpointIndependent, EndpointIndependent, DeltaEqual, 0}
	case RestrictedCone:
		return Truth{NATRestricted, EndpointIndependent, AddressDependent, DeltaEqual, 0}
	case PortRestrictedCone, Symmetric, SymmetricSequential:
		return Truth{NATRestrictedPort, EndpointIndependent, AddressAndPortDependent, DeltaEqual, 0}
	case UDPBlocked:
		return Truth{NATBlocked, Unknown, Unknown, DeltaUnknown, 0}
	}
	return Truth{}
}
