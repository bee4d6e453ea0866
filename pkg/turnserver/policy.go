package turnserver

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Denial reasons, used as the "reason" label of
// turnd_permission_denials_total. The set is fixed (no per-address values).
const (
	ReasonLoopback    = "loopback"
	ReasonUnspecified = "unspecified"
	ReasonPrivate     = "private"
	ReasonULA         = "ula"
	ReasonLinkLocal   = "link_local"
	ReasonCGNAT       = "cgnat"
	ReasonMulticast   = "multicast"
	ReasonBroadcast   = "broadcast"
	ReasonMetadata    = "metadata"
	ReasonReserved    = "reserved"
	ReasonSelf        = "self"
)

// denyReasons lists every reason a Policy can give, for metric initialisation.
var denyReasons = []string{
	ReasonLoopback, ReasonUnspecified, ReasonPrivate, ReasonULA, ReasonLinkLocal, ReasonCGNAT,
	ReasonMulticast, ReasonBroadcast, ReasonMetadata, ReasonReserved, ReasonSelf,
}

type deniedRange struct {
	prefix netip.Prefix
	reason string
}

// Ranges are checked in order: the first match gives the reason, so the more
// specific ones (metadata inside link-local, broadcast inside reserved) come first.
var deniedRanges = []deniedRange{
	{netip.MustParsePrefix("169.254.169.254/32"), ReasonMetadata},
	{netip.MustParsePrefix("255.255.255.255/32"), ReasonBroadcast},
	{netip.MustParsePrefix("0.0.0.0/8"), ReasonUnspecified},
	{netip.MustParsePrefix("127.0.0.0/8"), ReasonLoopback},
	{netip.MustParsePrefix("10.0.0.0/8"), ReasonPrivate},
	{netip.MustParsePrefix("172.16.0.0/12"), ReasonPrivate},
	{netip.MustParsePrefix("192.168.0.0/16"), ReasonPrivate},
	{netip.MustParsePrefix("100.64.0.0/10"), ReasonCGNAT},
	{netip.MustParsePrefix("169.254.0.0/16"), ReasonLinkLocal},
	{netip.MustParsePrefix("224.0.0.0/4"), ReasonMulticast},
	{netip.MustParsePrefix("240.0.0.0/4"), ReasonReserved},
	{netip.MustParsePrefix("::/128"), ReasonUnspecified},
	{netip.MustParsePrefix("::1/128"), ReasonLoopback},
	{netip.MustParsePrefix("fc00::/7"), ReasonULA},
	{netip.MustParsePrefix("fe80::/10"), ReasonLinkLocal},
	{netip.MustParsePrefix("fec0::/10"), ReasonLinkLocal}, // deprecated site-local
	{netip.MustParsePrefix("ff00::/8"), ReasonMulticast},
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

// Policy decides which peer addresses clients may relay to. The zero value
// refuses only the fixed special-purpose ranges.
type Policy struct {
	allow              []netip.Prefix
	self               map[netip.Addr]bool
	bcast              map[netip.Addr]bool
	relayMin, relayMax uint16 // the server's relay ports: the one way to reach a self address
}

// WithRelayPorts lets peers on the server's own addresses through when their
// port is a relay port (min-max): two clients of this server relaying to each
// other's relay addresses. Every other port of the server stays refused.
func (p *Policy) WithRelayPorts(minPort, maxPort int) *Policy {
	p.relayMin, p.relayMax = uint16(minPort), uint16(maxPort)
	return p
}

// NewPolicy builds a policy. allow lists CIDRs that are always permitted (they
// override every refusal, including the server's own addresses). self lists
// the server's own addresses; selfNets adds the directed-broadcast address of
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

// embedded returns the IPv4 address carried inside an IPv6 address of one of
// the embedding forms.
func embedded(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	for _, p := range embeddingPrefixes {
		if p.Contains(a) {
			b := a.As16()
			return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
		}
	}
	return netip.Addr{}, false
}

// Check returns "" when ip may be a peer, else the reason it is refused. The
// server's own addresses are refused whatever the port (see CheckPeer).
func (p *Policy) Check(ip netip.Addr) string {
	return p.check(ip, 0, false)
}

// CheckPeer is Check for a transport address: a self address is allowed when
// the port is one of the server's relay ports.
func (p *Policy) CheckPeer(ap netip.AddrPort) string {
	return p.check(ap.Addr(), ap.Port(), false)
}

// checkNotSelf is Check without the self rule. pion's PermissionHandler gets
// no port, so it uses this; the filter (CreatePermission, ChannelBind) and the
// relay socket (every send) apply the self rule with the port.
func (p *Policy) checkNotSelf(ip netip.Addr) string {
	return p.check(ip, 0, true)
}

func (p *Policy) check(ip netip.Addr, port uint16, skipSelf bool) string {
	if !ip.IsValid() {
		return ReasonUnspecified
	}
	ip = ip.WithZone("")
	forms := []netip.Addr{ip}
	if v4, ok := embedded(ip); ok {
		forms = append(forms, v4)
	}
	for _, a := range forms {
		for _, pr := range p.allow {
			if pr.Contains(a) {
				return ""
			}
		}
	}
	relayPort := p.relayMax != 0 && port >= p.relayMin && port <= p.relayMax
	for _, a := range forms {
		if r := p.reason(a, skipSelf || relayPort); r != "" {
			return r
		}
	}
	return ""
}

func (p *Policy) reason(a netip.Addr, skipSelf bool) string {
	for _, d := range deniedRanges {
		if d.prefix.Contains(a) {
			return d.reason
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
