package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/nat"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/p2pd-go/p2pd/pkg/signal"
)

// Built-in strategy names.
const (
	Direct  = "direct"
	Reverse = "reverse"
)

// Hello kinds: how a pipe was made.
const (
	KindDirect  = "direct"
	KindReverse = "reverse"
	KindRelay   = "relay"
	KindPunch   = "punch"
)

// directStrategy races a TCP connection to every candidate address.
type directStrategy struct{ n *Node }

func (directStrategy) Name() string { return Direct }

func (d directStrategy) Plan(a Attempt) string {
	// What filters comes first: a peer with only filtered IPv6 blocks has
	// no candidate either (they are left out), and the filter is the cause.
	if len(a.To.IPv4)+len(a.To.IPv6) > 0 && !Reachable(a.To, a.Mine) {
		return "the peer's " + filterer(a.To) + " unsolicited connections (no open or full-cone block, not behind our router)"
	}
	if len(Candidates(a.To, a.Mine)) == 0 {
		return "the peer address has no reachable candidate"
	}
	return ""
}

func (d directStrategy) Connect(ctx context.Context, a Attempt) (*SecureConn, error) {
	return d.n.direct(ctx, a.To, a.Peer, Hello{PipeID: a.PipeID, Kind: KindDirect})
}

// reverseStrategy asks the peer over signalling (CON) to connect back.
type reverseStrategy struct{ n *Node }

func (reverseStrategy) Name() string { return Reverse }

func (r reverseStrategy) Plan(a Attempt) string {
	if r.n.cfg.Signal == nil || r.n.cfg.Address == nil {
		return "no signalling configured"
	}
	if a.Mine.NodeID != "" && !Reachable(a.Mine, a.To) {
		return "our " + filterer(a.Mine) + " unsolicited connections, so the peer cannot connect back (no open or full-cone block, not behind its router)"
	}
	return ""
}

// Reachable reports whether a TCP connection from the node at from can get
// into the node at to without punching: to has a block that is open or
// behind a full-cone NAT, or the two share a router. An untranslated block
// (IPv6, public IPv4) says open only when its firewall does not filter
// (the agent measures it); a
// node whose gateway forwards its port advertises that block as open.
func Reachable(to, from peeraddr.Address) bool {
	for _, fam := range [][2][]peeraddr.Block{{to.IPv4, from.IPv4}, {to.IPv6, from.IPv6}} {
		for _, b := range fam[0] {
			if admits(b) || sameRouter(b, fam[1]) {
				return true
			}
		}
	}
	return false
}

// filterer names, with its verb, what keeps unsolicited connections out of
// an address, per family: a NAT where a block's external address is not its
// NIC's, a firewall where it is (a public IPv4 address or a global IPv6 one
// behind a filter), e.g. "IPv4 NAT and IPv6 firewall filter".
func filterer(a peeraddr.Address) string {
	var parts []string
	for _, fam := range []struct {
		name   string
		blocks []peeraddr.Block
	}{{"IPv4", a.IPv4}, {"IPv6", a.IPv6}} {
		var nat, fw bool
		for _, b := range fam.blocks {
			if b.Ext == b.NIC {
				fw = true
			} else {
				nat = true
			}
		}
		switch {
		case nat && fw:
			parts = append(parts, fam.name+" NAT and firewall")
		case nat:
			parts = append(parts, fam.name+" NAT")
		case fw:
			parts = append(parts, fam.name+" firewall")
		}
	}
	switch len(parts) {
	case 0:
		return "NAT or firewall filters"
	case 1:
		if strings.HasSuffix(parts[0], " and firewall") {
			return parts[0] + " filter"
		}
		return parts[0] + " filters"
	}
	return strings.Join(parts, " and ") + " filter"
}

// admits reports whether a block's NAT or firewall lets unsolicited
// connections in.
func admits(b peeraddr.Block) bool {
	return b.NATType == int(nat.OpenInternet) || b.NATType == int(nat.FullCone)
}

func (r reverseStrategy) Connect(ctx context.Context, a Attempt) (*SecureConn, error) {
	return r.n.reverse(ctx, a.To, a.PipeID)
}

func (reverseStrategy) SignalTypes() []signal.Type { return []signal.Type{signal.TypeCon} }

func (r reverseStrategy) HandleSignal(m *signal.Message) { r.n.handleCon(m) }

// Candidates lists where to reach a peer directly: IPv6 blocks first, each
// block's external address, or its NIC address when the peer is behind the
// same router as us (same external address). IPv6 link-local NIC addresses
// are skipped: the peer's zone cannot be known. So are IPv6 blocks whose
// firewall filters (not open): a dial there only times out (the punch
// strategy gets through them).
func Candidates(to, mine peeraddr.Address) []netip.AddrPort {
	var out []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	for i, fam := range [][2][]peeraddr.Block{{to.IPv6, mine.IPv6}, {to.IPv4, mine.IPv4}} {
		for _, b := range fam[0] {
			ip := b.Ext
			same := sameRouter(b, fam[1])
			if same {
				ip = b.NIC
			}
			if i == 0 && !same && !admits(b) {
				continue
			}
			if !ip.IsValid() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
				continue
			}
			ap := netip.AddrPortFrom(ip, b.Port)
			if !seen[ap] {
				seen[ap] = true
				out = append(out, ap)
			}
		}
	}
	return out
}

func sameRouter(b peeraddr.Block, mine []peeraddr.Block) bool {
	for _, m := range mine {
		if m.Ext == b.Ext {
			return true
		}
	}
	return false
}

func (n *Node) myAddress() peeraddr.Address {
	if n.cfg.Address == nil {
		return peeraddr.Address{}
	}
	a, err := n.cfg.Address()
	if err != nil {
		return peeraddr.Address{}
	}
	return a
}

// direct races a connection to every candidate; the first that completes
// the handshake wins and the others are closed.
func (n *Node) direct(ctx context.Context, to peeraddr.Address, peer [identity.KeySize]byte, hello Hello) (*SecureConn, error) {
	cands := Candidates(to, n.myAddress())
	if len(cands) > maxCandidates {
		cands = cands[:maxCandidates]
	}
	return n.dial(ctx, cands, peer, hello, n.cfg.DirectTimeout)
}

// dial races connections to cands; the first to complete the handshake wins.
func (n *Node) dial(ctx context.Context, cands []netip.AddrPort, peer [identity.KeySize]byte, hello Hello, timeout time.Duration) (*SecureConn, error) {
	if len(cands) == 0 {
		return nil, errors.New("the address has no reachable candidate")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		sc  *SecureConn
		err error
	}
	results := make(chan result, len(cands))
	for _, ap := range cands {
		go func() {
			c, err := n.cfg.Net.DialContext(ctx, "tcp", ap.String())
			if err != nil {
				results <- result{nil, fmt.Errorf("%s: %w", ap, err)}
				return
			}
			sc, err := Initiate(ctx, c, n.cfg.Identity, peer, hello)
			if err != nil {
				c.Close()
				results <- result{nil, fmt.Errorf("%s: %w", ap, err)}
				return
			}
			results <- result{sc, nil}
		}()
	}
	var winner *SecureConn
	var errs []error
	for range cands {
		r := <-results
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case winner == nil:
			winner = r.sc
			cancel() // stop the others
		default:
			r.sc.Close()
		}
	}
	if winner != nil {
		return winner, nil
	}
	return nil, errors.Join(errs...)
}

// reverse asks the peer over signalling to connect back, and waits for its
// authenticated pipe carrying our pipe id.
func (n *Node) reverse(ctx context.Context, to peeraddr.Address, id string) (*SecureConn, error) {
	if n.cfg.Signal == nil || n.cfg.Address == nil {
		return nil, errors.New("no signalling configured")
	}
	mine, err := n.cfg.Address()
	if err != nil {
		return nil, fmt.Errorf("own address: %w", err)
	}
	ch, done := n.Await(id, to.NodeID)
	defer done()
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ReverseTimeout)
	defer cancel()
	ttl := int64(n.cfg.ReverseTimeout / time.Second)
	if err := n.cfg.Signal.SendTo(ctx, to, signal.Body{Type: signal.TypeCon, PipeID: id, TTL: max(ttl, 1), SrcAddr: mine.String()}); err != nil {
		return nil, fmt.Errorf("send CON: %w", err)
	}
	select {
	case sc := <-ch:
		return sc, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("peer did not connect back: %w", ctx.Err())
	}
}

// Await registers for the inbound pipe that peer (a node id) opens with
// pipe id: a strategy that has the peer connect to it (reverse, relay, the
// responder side of a punch) waits on the channel. done must be called when
// the strategy stops waiting; it closes a pipe that arrived too late.
func (n *Node) Await(pipeID, peer string) (<-chan *SecureConn, func()) {
	w := waiter{peer: peer, ch: make(chan *SecureConn, 1)}
	n.mu.Lock()
	n.waiters[pipeID] = w
	n.mu.Unlock()
	return w.ch, func() {
		n.mu.Lock()
		delete(n.waiters, pipeID)
		select { // a pipe that arrived as we gave up
		case sc := <-w.ch:
			sc.Close()
		default:
		}
		n.mu.Unlock()
	}
}

// handleCon makes the node connect back to the sender of a CON.
//
// Connect-backs are limited: CONs per sending node (ConBurst, ConRate),
// concurrent connect-backs (MaxConnectBacks), and targets: never loopback,
// multicast, broadcast or unspecified addresses, and private or link-local
// ones only when the sender is behind our own router. So a forged CON
// cannot turn the node into a scanner of our LAN or a reflector at third
// parties.
func (n *Node) handleCon(m *signal.Message) {
	addr, err := peeraddr.Parse(m.SrcAddr)
	if err != nil {
		n.cfg.Log.Info("CON with a bad address dropped", "from", m.FromID(), "err", err)
		n.cfg.Metrics.Connects.WithLabelValues("reverse_back", "refused").Inc()
		return
	}
	if addr.NodeID != m.FromID() {
		// Only connect back to the node that asked.
		n.cfg.Log.Info("CON for another node's address dropped", "from", m.FromID(), "addr_node", addr.NodeID)
		n.cfg.Metrics.Connects.WithLabelValues("reverse_back", "refused").Inc()
		return
	}
	if !n.cons.allow(m.FromID()) {
		n.cfg.Log.Info("CON rate limit", "from", m.FromID())
		n.cfg.Metrics.Connects.WithLabelValues("reverse_back", "limited").Inc()
		return
	}
	mine := n.myAddress()
	if len(safeCandidates(addr, mine)) == 0 {
		n.cfg.Log.Info("CON with no acceptable address dropped", "from", m.FromID(), "addr", m.SrcAddr)
		n.cfg.Metrics.Connects.WithLabelValues("reverse_back", "refused").Inc()
		return
	}
	select {
	case n.backs <- struct{}{}:
	default:
		n.cfg.Metrics.Connects.WithLabelValues("reverse_back", "limited").Inc()
		return
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		<-n.backs
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		defer func() { <-n.backs }()
		start := time.Now()
		sc, err := n.dial(n.ctx, safeCandidates(addr, mine), m.From, Hello{PipeID: m.PipeID, Kind: KindReverse}, n.cfg.ReverseTimeout)
		n.cfg.Metrics.Duration.WithLabelValues("reverse_back").Observe(time.Since(start).Seconds())
		if err != nil {
			n.cfg.Metrics.Connects.WithLabelValues("reverse_back", "failed").Inc()
			n.cfg.Log.Info("connect back failed", "to", m.FromID(), "err", err)
			return
		}
		n.cfg.Metrics.Connects.WithLabelValues("reverse_back", "ok").Inc()
		if n.cfg.OnPipe == nil {
			sc.Close()
			return
		}
		n.cfg.OnPipe(sc, Hello{PipeID: m.PipeID, Kind: KindReverse})
	}()
}

// maxCandidates bounds how many addresses one connect dials.
const maxCandidates = 8

// safeCandidates are the candidates a connect-back may dial (see
// HandleSignal).
func safeCandidates(to, mine peeraddr.Address) []netip.AddrPort {
	var out []netip.AddrPort
	for _, c := range Candidates(to, mine) {
		ip := c.Addr()
		switch {
		case ip.IsLoopback(), ip.IsMulticast(), ip.IsUnspecified(), ip.IsInterfaceLocalMulticast(),
			ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}), c.Port() == 0:
			continue
		case ip.IsPrivate() || ip.IsLinkLocalUnicast() || cgnat.Contains(ip):
			if !sameRouterIP(ip, to, mine) {
				continue
			}
		}
		out = append(out, c)
		if len(out) == maxCandidates {
			break
		}
	}
	return out
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// sameRouterIP reports whether ip is the NIC address of one of to's blocks
// whose external address is also ours.
func sameRouterIP(ip netip.Addr, to, mine peeraddr.Address) bool {
	for _, fam := range [][2][]peeraddr.Block{{to.IPv4, mine.IPv4}, {to.IPv6, mine.IPv6}} {
		for _, b := range fam[0] {
			if b.NIC == ip && sameRouter(b, fam[1]) {
				return true
			}
		}
	}
	return false
}
