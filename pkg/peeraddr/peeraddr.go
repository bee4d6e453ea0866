// Package peeraddr encodes and parses peer addresses in P2PD's 4-part text
// format:
//
//	<signal offsets>-<ipv4 blocks or 0>-<ipv6 blocks or 0>-<node id>
//
// The signal offsets are comma-separated indexes into the configured MQTT
// broker list (1 to 3 of them). Each address family section is the literal 0
// or 1 to 4 interface blocks joined by "|"; a block is
//
//	[if_index,ext_ip,nic_ip,port,nat_type,delta_type,delta_value]
//
// The node id is 52 lowercase base32 characters (see package identity).
//
// Example:
//
//	0,1-[0,8.8.8.8,192.168.21.21,10001,3,2,0]-0-<52-char node id>
//
// Parsing is strict: anything out of place is an error naming the field,
// never silently skipped. String writes the canonical form, with IPv6
// addresses compressed (RFC 5952); Parse also accepts P2PD's exploded IPv6.
package peeraddr

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/p2pd-go/p2pd/pkg/identity"
)

// Limits of the format.
const (
	MaxSignal    = 3     // signal offsets per address
	MaxBlocks    = 4     // interface blocks per address family
	MaxOffset    = 255   // largest signal offset
	MaxIfIndex   = 255   // largest interface index
	MaxNATType   = 7     // NAT types are 1..7
	MaxDeltaType = 6     // delta types are 1..6
	MaxDelta     = 65535 // largest delta value
	MaxLen       = 4096  // longest address text accepted
)

const (
	blockFields  = 7
	emptySection = "0" // an address family without blocks
	sepParts     = "-"
	sepBlocks    = "|"
	sepFields    = ","
	familyV4     = "ipv4"
	familyV6     = "ipv6"
)

// ErrSyntax is wrapped by every Parse error.
var ErrSyntax = errors.New("peeraddr: bad address")

// Address is a peer address.
type Address struct {
	Signal []int   // offsets into the broker list, 1..3 of them
	IPv4   []Block // 0..4 blocks; Ext and NIC are IPv4
	IPv6   []Block // 0..4 blocks; Ext and NIC are IPv6
	NodeID string  // 52-char node id
}

// Block describes one interface of a peer.
type Block struct {
	IfIndex    int        // position in the peer's interface list
	Ext        netip.Addr // external (STUN-observed) address
	NIC        netip.Addr // address bound on the interface
	Port       uint16     // the node's listening TCP port, 1..65535
	NATType    int        // P2PD NAT type 1..7
	DeltaType  int        // P2PD delta type 1..6
	DeltaValue int        // 0..65535
}

// String returns the canonical text form. It does not validate; call
// Validate first for addresses built by hand.
func (a Address) String() string {
	var b strings.Builder
	for i, o := range a.Signal {
		if i > 0 {
			b.WriteString(sepFields)
		}
		b.WriteString(strconv.Itoa(o))
	}
	b.WriteString(sepParts)
	writeSection(&b, a.IPv4)
	b.WriteString(sepParts)
	writeSection(&b, a.IPv6)
	b.WriteString(sepParts)
	b.WriteString(a.NodeID)
	return b.String()
}

func writeSection(b *strings.Builder, blocks []Block) {
	if len(blocks) == 0 {
		b.WriteString(emptySection)
		return
	}
	for i, bl := range blocks {
		if i > 0 {
			b.WriteString(sepBlocks)
		}
		b.WriteString(bl.String())
	}
}

// String returns the block as "[if_index,ext,nic,port,nat,delta_type,delta]".
func (bl Block) String() string {
	return fmt.Sprintf("[%d,%s,%s,%d,%d,%d,%d]", bl.IfIndex, bl.Ext, bl.NIC, bl.Port, bl.NATType, bl.DeltaType, bl.DeltaValue)
}

// Validate checks a (for example hand-built) address against the same rules
// Parse applies.
func (a Address) Validate() error {
	if err := checkSignal(a.Signal); err != nil {
		return err
	}
	for _, f := range []struct {
		name   string
		blocks []Block
		is4    bool
	}{{familyV4, a.IPv4, true}, {familyV6, a.IPv6, false}} {
		if len(f.blocks) > MaxBlocks {
			return fmt.Errorf("%w: %s: %d blocks, at most %d", ErrSyntax, f.name, len(f.blocks), MaxBlocks)
		}
		for i, bl := range f.blocks {
			if err := bl.check(f.is4); err != nil {
				return fmt.Errorf("%w: %s block %d: %w", ErrSyntax, f.name, i+1, err)
			}
		}
	}
	if _, err := identity.ParseNodeID(a.NodeID); err != nil {
		return fmt.Errorf("%w: node id: %w", ErrSyntax, err)
	}
	return nil
}

func checkSignal(offsets []int) error {
	if len(offsets) == 0 {
		return fmt.Errorf("%w: signal: no offsets", ErrSyntax)
	}
	if len(offsets) > MaxSignal {
		return fmt.Errorf("%w: signal: %d offsets, at most %d", ErrSyntax, len(offsets), MaxSignal)
	}
	for i, o := range offsets {
		if o < 0 || o > MaxOffset {
			return fmt.Errorf("%w: signal offset %d: %d out of range 0-%d", ErrSyntax, i+1, o, MaxOffset)
		}
		for _, p := range offsets[:i] {
			if p == o {
				return fmt.Errorf("%w: signal offset %d: %d repeated", ErrSyntax, i+1, o)
			}
		}
	}
	return nil
}

func (bl Block) check(is4 bool) error {
	if bl.IfIndex < 0 || bl.IfIndex > MaxIfIndex {
		return fmt.Errorf("if_index: %d out of range 0-%d", bl.IfIndex, MaxIfIndex)
	}
	if err := checkIP(bl.Ext, is4); err != nil {
		return fmt.Errorf("ext_ip: %w", err)
	}
	if err := checkIP(bl.NIC, is4); err != nil {
		return fmt.Errorf("nic_ip: %w", err)
	}
	if bl.Port == 0 {
		return errors.New("port: 0 out of range 1-65535")
	}
	if bl.NATType < 1 || bl.NATType > MaxNATType {
		return fmt.Errorf("nat_type: %d out of range 1-%d", bl.NATType, MaxNATType)
	}
	if bl.DeltaType < 1 || bl.DeltaType > MaxDeltaType {
		return fmt.Errorf("delta_type: %d out of range 1-%d", bl.DeltaType, MaxDeltaType)
	}
	if bl.DeltaValue < 0 || bl.DeltaValue > MaxDelta {
		return fmt.Errorf("delta_value: %d out of range 0-%d", bl.DeltaValue, MaxDelta)
	}
	return nil
}

func checkIP(ip netip.Addr, is4 bool) error {
	switch {
	case !ip.IsValid():
		return errors.New("missing")
	case ip.Zone() != "":
		return fmt.Errorf("%s has a zone", ip)
	case is4 && !ip.Is4():
		return fmt.Errorf("%s is not IPv4", ip)
	case !is4 && (!ip.Is6() || ip.Is4In6()):
		return fmt.Errorf("%s is not IPv6", ip)
	}
	return nil
}

// Parse parses and validates an address in the text form.
func Parse(s string) (Address, error) {
	var a Address
	if len(s) > MaxLen {
		return a, fmt.Errorf("%w: %d bytes, at most %d", ErrSyntax, len(s), MaxLen)
	}
	parts := strings.Split(s, sepParts)
	if len(parts) != 4 {
		return a, fmt.Errorf("%w: %d parts separated by %q, want 4 (signal-ipv4-ipv6-nodeid)", ErrSyntax, len(parts), sepParts)
	}
	var err error
	if a.Signal, err = parseSignal(parts[0]); err != nil {
		return Address{}, err
	}
	if a.IPv4, err = parseSection(familyV4, parts[1], true); err != nil {
		return Address{}, err
	}
	if a.IPv6, err = parseSection(familyV6, parts[2], false); err != nil {
		return Address{}, err
	}
	a.NodeID = parts[3]
	if err := a.Validate(); err != nil {
		return Address{}, err
	}
	return a, nil
}

func parseSignal(s string) ([]int, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: signal: empty", ErrSyntax)
	}
	fields := strings.Split(s, sepFields)
	if len(fields) > MaxSignal {
		return nil, fmt.Errorf("%w: signal: %d offsets, at most %d", ErrSyntax, len(fields), MaxSignal)
	}
	out := make([]int, 0, len(fields))
	for i, f := range fields {
		n, err := parseUint(f)
		if err != nil {
			return nil, fmt.Errorf("%w: signal offset %d: %w", ErrSyntax, i+1, err)
		}
		out = append(out, n)
	}
	return out, checkSignal(out)
}

func parseSection(family, s string, is4 bool) ([]Block, error) {
	if s == emptySection {
		return nil, nil
	}
	if s == "" {
		return nil, fmt.Errorf("%w: %s: empty (write %q for none)", ErrSyntax, family, emptySection)
	}
	texts := strings.Split(s, sepBlocks)
	if len(texts) > MaxBlocks {
		return nil, fmt.Errorf("%w: %s: %d blocks, at most %d", ErrSyntax, family, len(texts), MaxBlocks)
	}
	blocks := make([]Block, 0, len(texts))
	for i, t := range texts {
		bl, err := parseBlock(t, is4)
		if err != nil {
			return nil, fmt.Errorf("%w: %s block %d: %w", ErrSyntax, family, i+1, err)
		}
		blocks = append(blocks, bl)
	}
	return blocks, nil
}

func parseBlock(s string, is4 bool) (Block, error) {
	var bl Block
	inner, ok := strings.CutPrefix(s, "[")
	if ok {
		inner, ok = strings.CutSuffix(inner, "]")
	}
	if !ok {
		return bl, fmt.Errorf("%q is not enclosed in [ ]", s)
	}
	f := strings.Split(inner, sepFields)
	if len(f) != blockFields {
		return bl, fmt.Errorf("%d fields, want %d (if_index,ext_ip,nic_ip,port,nat_type,delta_type,delta_value)", len(f), blockFields)
	}
	var err error
	if bl.IfIndex, err = parseUint(f[0]); err != nil {
		return bl, fmt.Errorf("if_index: %w", err)
	}
	if bl.Ext, err = parseIP(f[1], is4); err != nil {
		return bl, fmt.Errorf("ext_ip: %w", err)
	}
	if bl.NIC, err = parseIP(f[2], is4); err != nil {
		return bl, fmt.Errorf("nic_ip: %w", err)
	}
	port, err := parseUint(f[3])
	if err != nil {
		return bl, fmt.Errorf("port: %w", err)
	}
	if port > 65535 {
		return bl, fmt.Errorf("port: %d out of range 1-65535", port)
	}
	bl.Port = uint16(port)
	if bl.NATType, err = parseUint(f[4]); err != nil {
		return bl, fmt.Errorf("nat_type: %w", err)
	}
	if bl.DeltaType, err = parseUint(f[5]); err != nil {
		return bl, fmt.Errorf("delta_type: %w", err)
	}
	if bl.DeltaValue, err = parseUint(f[6]); err != nil {
		return bl, fmt.Errorf("delta_value: %w", err)
	}
	return bl, bl.check(is4)
}

// parseUint accepts 1 to 5 ASCII digits without sign or redundant leading
// zeros; callers check the range.
func parseUint(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	if len(s) > 5 {
		return 0, fmt.Errorf("%q too long", s)
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", s)
	}
	n, _ := strconv.Atoi(s)
	return n, nil
}

func parseIP(s string, is4 bool) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return ip, fmt.Errorf("%q is not an IP address", s)
	}
	return ip, checkIP(ip, is4)
}
