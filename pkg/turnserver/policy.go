package turnserver

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Denial reasons, used as the "reason" label of
// turnd_permission_denials_total. The set is fixed (no per-address values).
const (
	ReasonLoopback      = "loopback"
	ReasonUnspecified   = "unspecified"
	ReasonPrivate       = "private"
	ReasonULA           = "ula"
	ReasonLinkLocal     = "link_local"
	ReasonCGNAT         = "cgnat"
	ReasonMulticast     = "multicast"
	ReasonBroadcast     = "broadcast"
	ReasonMetadata      = "metadata"
	ReasonDocumentation = "documentation"
	ReasonBenchmarking  = "benchmarking"
	ReasonReserved      = "reserved"
	ReasonSelf          = "self"
	ReasonOwnPort       = "own_port"
)

// denyReasons lists every reason a Policy can give, for metric initialisation.
var denyReasons = []string{
	ReasonLoopback, ReasonUnspecified, ReasonPrivate, ReasonULA, ReasonLinkLocal, ReasonCGNAT,
	ReasonMulticast, ReasonBroadcast, ReasonMetadata, ReasonDocumentation, ReasonBenchmarking,
	ReasonReserved, ReasonSelf, ReasonOwnPort,
}

type deniedRange struct {
	prefix netip.Prefix
	reason string
}

func deny(prefix, reason string) deniedRange {
	return deniedRange{netip.MustParsePrefix(prefix), reason}
}

// deniedRanges are the blocks the IANA IPv4 and IPv6 Special-Purpose Address
// Registries mark as not globally reachable, plus multicast and the cloud
// metadata address. They are checked in order: the first match gives the
// reason, so the more specific ones (metadata inside link-local, broadcast
// inside reserved, benchmarking inside 2001::/23) come first.
var deniedRanges = []deniedRange{
	deny("169.254.169.254/32", ReasonMetadata),
	deny("255.255.255.255/32", ReasonBroadcast),
	deny("0.0.0.0/8", ReasonUnspecified),
	deny("127.0.0.0/8", ReasonLoopback),
	deny("10.0.0.0/8", ReasonPrivate),
	deny("172.16.0.0/12", ReasonPrivate),
	deny("192.168.0.0/16", ReasonPrivate),
	deny("100.64.0.0/10", ReasonCGNAT),
	deny("169.254.0.0/16", ReasonLinkLocal),
	deny("192.0.0.0/24", ReasonReserved), // IETF protocol assignments
	deny("192.0.2.0/24", ReasonDocumentation),
	deny("198.51.100.0/24", ReasonDocumentation),
	deny("203.0.113.0/24", ReasonDocumentation),
	deny("198.18.0.0/15", ReasonBenchmarking),
	deny("192.88.99.0/24", ReasonReserved), // deprecated 6to4 relay anycast
	deny("224.0.0.0/4", ReasonMulticast),
	deny("240.0.0.0/4", ReasonReserved),
	deny("::/128", ReasonUnspecified),
	deny("::1/128", ReasonLoopback),
	deny("100::/64", ReasonReserved),        // discard-only
	deny("100:0:0:1::/64", ReasonReserved),  // dummy prefix
	deny("64:ff9b:1::/48", ReasonReserved),  // local-use NAT64
	deny("2001:2::/48", ReasonBenchmarking), // inside 2001::/23
	deny("2001::/23", ReasonReserved),       // IETF protocol assignments
	deny("2001:db8::/32", ReasonDocumentation),
	deny("3fff::/20", ReasonDocumentation),
	deny("5f00::/16", ReasonReserved), // SRv6 SIDs
	deny("fc00::/7", ReasonULA),
	deny("fe80::/10", ReasonLinkLocal),
	deny("fec0::/10", ReasonLinkLocal), // deprecated site-local
	deny("ff00::/8", ReasonMulticast),
}

// reachable are the blocks inside a denied range that the registries mark
// globally reachable (anycast services, AS112, ORCHIDv2, drone remote ID),
// and Teredo, which is judged by the IPv4 addresses it carries.
var reachable = []netip.Prefix{
	netip.MustParsePrefix("192.0.0.9/32"),    // PCP anycast
	netip.MustParsePrefix("192.0.0.10/32"),   // TURN anycast
	netip.MustParsePrefix("2001::/32"),       // Teredo
	netip.MustParsePrefix("2001:1::1/128"),   // PCP anycast
	netip.MustParsePrefix("2001:1::2/128"),   // TURN anycast
	netip.MustParsePrefix("2001:1::3/128"),   // DNS-SD service registration anycast
	netip.MustParsePrefix("2001:3::/32"),     // AMT
	netip.MustParsePrefix("2001:4:112::/48"), // AS112-v6
	netip.MustParsePrefix("2001:20::/28"),    // ORCHIDv2
	netip.MustParsePrefix("2001:30::/28"),    // drone remote ID
}

// IPv6 prefixes whose low 32 bits carry an IPv4 address that traffic to the
// IPv6 address may reach (the bypass class of coturn CVE-2020-26262).
var embeddingPrefixes = []netip.Prefix{
	netip.MustParsePrefix("::ffff:0:0/96"),   // IPv4-mapped
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated)
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (SIIT)
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64 well-known prefix
	netip.MustParsePrefix("64:ff9b:1::/48"),  // NAT64 local-use prefix
}

var (
	sixToFour = netip.MustParsePrefix("2002::/16") // IPv4 address in bits 16-47
	teredo    = netip.MustParsePrefix("2001::/32") // server IPv4 in bits 32-63, client IPv4 inverted in 96-127
)

// Policy decides which peer addresses clients may relay to. The zero value
// refuses only the fixed special-purpose ranges.
type Policy struct {
	allow    []netip.Prefix
	self     map[netip.Addr]bool
	bcast    map[netip.Addr]bool
	ownPorts map[uint16]bool        // the server's own service ports (TURN, TLS, admin)
	live     func(port uint16) bool // reports a live allocation's relay port: the one way to reach a self address
}

// WithLiveRelays lets peers on the server's own addresses through when their
// port is the relay port of an allocation that exists now (live reports
// that): two clients of this server relaying to each other's relay
// addresses, also when those addresses are in a refused range. Every other
// port of the server stays refused, including free ports of the relay range
// and plain sockets bound in it.
func (p *Policy) WithLiveRelays(live func(port uint16) bool) *Policy {
	p.live = live
	return p
}

// WithOwnPorts refuses the server's own service ports (TURN, TLS, admin) on
// every address of the host (its own, loopback, unspecified), even inside
// an allow list: --allow-peer opens networks, never turnd itself.
func (p *Policy) WithOwnPorts(ports ...int) *Policy {
	if p.ownPorts == nil {
		p.ownPorts = map[uint16]bool{}
	}
	for _, port := range ports {
		if port > 0 && port <= 65535 {
			p.ownPorts[uint16(port)] = true
		}
	}
	return p
}

// NewPolicy builds a policy. allow lists CIDRs that are always permitted (they
// override every refusal except the server's own ports). self lists the
// server's own addresses; selfNets adds the directed-broadcast address of
// each IPv4 network the server is on.
func NewPolicy(allow []netip.Prefix, self []netip.Addr, selfNets []netip.Prefix) *Policy {
	p := &Policy{self: map[netip.Addr]bool{}, bcast: map[netip.Addr]bool{}}
	for _, a := range allow {
		p.allow = append(p.allow, a.Masked())
	}
	for _, a := range self {
		p.self[a.Unmap().WithZone("")] = true
	}
	for _, n := range selfNets {
		if b, ok := broadcastOf(n); ok {
			p.bcast[b] = true
		}
	}
	return p
}

// HostPolicy is NewPolicy with the addresses of this machine's interfaces
// plus extra (for example the advertised public relay address).
func HostPolicy(allow []netip.Prefix, extra ...netip.Addr) (*Policy, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("turnserver: interface addresses: %w", err)
	}
	self := append([]netip.Addr(nil), extra...)
	var nets []netip.Prefix
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ones, _ := n.Mask.Size()
		self = append(self, ip.Unmap())
		nets = append(nets, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return NewPolicy(allow, self, nets), nil
}

func broadcastOf(n netip.Prefix) (netip.Addr, bool) {
	if !n.Addr().Is4() || n.Bits() >= 31 {
		return netip.Addr{}, false
	}
	b := n.Masked().Addr().As4()
	host := uint32(1)<<(32-n.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// forms returns ip and every IPv4 address carried inside it: the low 32 bits
// of the embedding forms, the 6to4 address, Teredo's server and client.
func forms(ip netip.Addr) []netip.Addr {
	out := []netip.Addr{ip}
	if !ip.Is6() {
		return out
	}
	b := ip.As16()
	for _, p := range embeddingPrefixes {
		if p.Contains(ip) {
			out = append(out, netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
			break
		}
	}
	switch {
	case sixToFour.Contains(ip):
		out = append(out, netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
	case teredo.Contains(ip):
		out = append(out, netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}),
			netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}))
	}
	return out
}

// Check returns "" when ip may be a peer, else the reason it is refused. The
// server's own addresses are refused whatever the port (see CheckPeer).
func (p *Policy) Check(ip netip.Addr) string {
	r, _ := p.check(ip, 0, false)
	return r
}

// CheckPeer is Check for a transport address: the server's own ports are
// refused on every host address, and a self address is allowed at a live
// allocation's relay port.
func (p *Policy) CheckPeer(ap netip.AddrPort) string {
	r, _ := p.check(ap.Addr(), ap.Port(), false)
	return r
}

// checkSend is CheckPeer for the relay socket; viaRelay reports that the
// answer rests on a live relay port, so it must not be remembered.
func (p *Policy) checkSend(ap netip.AddrPort) (reason string, viaRelay bool) {
	return p.check(ap.Addr(), ap.Port(), false)
}

// checkNotSelf is Check without the self rule: the server's own addresses
// pass, wherever they are. pion's PermissionHandler gets no port, so it uses
// this; the filter (CreatePermission, ChannelBind) and the relay socket
// (every send) apply the self rule with the port.
func (p *Policy) checkNotSelf(ip netip.Addr) string {
	r, _ := p.check(ip, 0, true)
	return r
}

// host reports whether a is an address of this machine.
func (p *Policy) host(a netip.Addr) bool {
	return p.self[a] || a.IsLoopback() || a.IsUnspecified()
}

func (p *Policy) check(ip netip.Addr, port uint16, skipSelf bool) (string, bool) {
	if !ip.IsValid() {
		return ReasonUnspecified, false
	}
	all := forms(ip.WithZone(""))
	if port != 0 && p.ownPorts[port] {
		for _, a := range all {
			if p.host(a) {
				return ReasonOwnPort, false
			}
		}
	}
	for _, a := range all {
		for _, pr := range p.allow {
			if pr.Contains(a) {
				return "", false
			}
		}
	}
	if skipSelf && p.self[ip.Unmap().WithZone("")] {
		return "", false // no port here: the filter and the relay socket decide with it
	}
	relay := port != 0 && p.live != nil && p.live(port)
	if relay && p.self[ip.Unmap().WithZone("")] {
		// One of this server's relay sockets: relay to relay. Allowed even
		// when the server's address is in a refused range (a private
		// deployment, the NAT lab's TEST-NET-3): the datagram never leaves.
		return "", true
	}
	usedRelay := false
	for _, a := range all {
		r := p.reason(a, skipSelf || relay)
		if r != "" {
			return r, false
		}
		usedRelay = usedRelay || (relay && !skipSelf && p.self[a])
	}
	return "", usedRelay
}

func (p *Policy) reason(a netip.Addr, skipSelf bool) string {
	if !slices.ContainsFunc(reachable, func(r netip.Prefix) bool { return r.Contains(a) }) {
		for _, d := range deniedRanges {
			if d.prefix.Contains(a) {
				return d.reason
			}
		}
	}
	if !skipSelf && p.self[a] {
		return ReasonSelf
	}
	if p.bcast[a] {
		return ReasonBroadcast
	}
	return ""
}

// ParsePrefixes parses a list of CIDRs or bare addresses (a bare address
// means that one address).
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("turnserver: bad CIDR %q: %w", s, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("turnserver: bad address %q: %w", s, err)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
