// Package punch is TCP and UDP hole punching: when it can work for a pair
// of NATs (Plan, PlanUDP), when both peers act (a meeting time on corrected
// clocks, MeetAt), what they tell each other over signalling (Offer), the
// dial loop that opens a TCP connection through both NATs from the punch
// port (Run), and the UDP punch that opens a QUIC stream from a punch
// socket (RunUDP). It knows nothing of nodes or pipes: pkg/agent runs the
// Noise handshake over what Run and RunUDP open.
package punch

import (
	"fmt"

	"github.com/p2pd-go/p2pd/pkg/nat"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
)

// Profile is what a peer address block says about one side's NAT.
type Profile struct {
	Type  nat.Type
	Delta nat.Delta
}

// ProfileOf reads a peer address block's NAT fields.
func ProfileOf(b peeraddr.Block) Profile {
	return Profile{Type: nat.Type(b.NATType), Delta: nat.Delta{Type: nat.DeltaType(b.DeltaType), Value: b.DeltaValue}}
}

func (p Profile) String() string {
	if p.Type == nat.SymmetricNAT {
		return fmt.Sprintf("%s, %s", p.Type, p.Delta.Type)
	}
	return p.Type.String()
}

// filtering is how strictly a NAT admits inbound SYNs.
type filtering int

const (
	filterNone    filtering = iota // open, full cone: anything gets in
	filterAddress                  // restricted cone: anyone we sent to, any port
	filterPort                     // port-restricted, symmetric: only the exact address and port we sent to
)

func (p Profile) filter() filtering {
	switch p.Type {
	case nat.OpenInternet, nat.FullCone:
		return filterNone
	case nat.RestrictNAT:
		return filterAddress
	}
	return filterPort
}

// Predictable reports whether the side's external port toward a peer it has
// not talked to yet is known: endpoint-independent NATs reuse the punch
// port's mapping, symmetric NATs need a delta pkg/nat can predict. A NAT
// whose UDP is blocked (or was not measured) says nothing about TCP; it is
// assumed endpoint-independent, as most NATs are for TCP, and its TCP
// mapping of the punch port is learnt over STUN/TCP.
func (p Profile) Predictable() bool {
	if p.Type != nat.SymmetricNAT {
		return true
	}
	return nat.Predictor{Type: p.Type, Delta: p.Delta}.Predictable()
}

// Decision is the plan for one pair: can a TCP punch work, and why.
type Decision struct {
	OK     bool
	Reason string
}

// Plan decides from both NAT profiles whether a TCP punch can open a
// connection. Both SYNs must pass both NATs: each side has to know the
// external port the other's SYN will come from, unless its own NAT admits
// that SYN without it. So a side whose port cannot be predicted (symmetric
// with random delta) can be punched only toward a NAT that filters by
// address alone (restricted cone: dialling the side's address opens it to
// every port) or not at all; toward a port-filtering NAT it would take
// guessing, and two unpredictable sides never meet.
func Plan(mine, peer Profile) Decision {
	mp, pp := mine.Predictable(), peer.Predictable()
	switch {
	case !mp && !pp:
		return Decision{false, fmt.Sprintf("both NATs (ours %s, the peer's %s) pick an unpredictable port per destination", mine, peer)}
	case !mp && peer.filter() == filterPort:
		return Decision{false, fmt.Sprintf("our NAT (%s) picks an unpredictable port per destination and the peer's (%s) admits only the exact port it sent to: a punch would have to guess", mine, peer)}
	case !pp && mine.filter() == filterPort:
		return Decision{false, fmt.Sprintf("the peer's NAT (%s) picks an unpredictable port per destination and ours (%s) admits only the exact port we sent to: a punch would have to guess", peer, mine)}
	case !mp:
		return Decision{true, fmt.Sprintf("our port is unpredictable (%s) but the peer's NAT (%s) filters by address only: its dial opens it to our SYN", mine, peer)}
	case !pp:
		return Decision{true, fmt.Sprintf("the peer's port is unpredictable (%s) but our NAT (%s) filters by address only: our dial opens it to the peer's SYN", peer, mine)}
	}
	return Decision{true, fmt.Sprintf("both external ports are known or predictable (ours %s, the peer's %s)", mine, peer)}
}

// PlanIPv6 decides whether to punch between two global IPv6 blocks. IPv6
// is not translated, so each side's endpoint is its own address and node
// port, known without prediction, and a stateful firewall (any filtering
// class, or UDP blocked) admits the peer's SYN once its own SYN has gone
// out to it: a simultaneous open always works. It is needed only where a
// firewall filters; when neither does, a direct connect gets in.
func PlanIPv6(mine, peer Profile) Decision {
	if mine.filter() == filterNone && peer.filter() == filterNone {
		return Decision{false, "neither IPv6 firewall filters (both open): a direct connect gets in"}
	}
	return Decision{true, fmt.Sprintf("over IPv6 both endpoints are known (no translation); each SYN opens its own firewall (ours %s, the peer's %s) to the other's", mine, peer)}
}
