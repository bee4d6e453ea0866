package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/p2pd-go/p2pd/internal/promreg"
	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/nat"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/p2pd-go/p2pd/pkg/punch"
	"github.com/p2pd-go/p2pd/pkg/signal"
	"github.com/p2pd-go/p2pd/pkg/stun"
	"github.com/prometheus/client_golang/prometheus"
)

// The punch strategy: the connecting side sends a PUNCH offer over
// signalling with its punch port's external endpoints (the node port's
// mapping, or its NAT's predicted next ports) and a meeting time on its
// corrected clock; the peer answers with its own endpoints and the same
// time, or a later one when the offer came too late. At that time both dial
// each other from the node port (pkg/punch). The lower node id runs the
// Noise initiator on what opens; the other side serves it through the node,
// which hands the pipe over by its pipe id; so exactly one pipe survives.
// A UDP leg races the TCP one (punchudp.go).

const (
	// punchPredictions is how many predicted ports a sequential NAT's side
	// offers (other flows through the NAT may take ports first).
	punchPredictions = 8
	// maxPunchResponses bounds the punches the agent runs for peers' offers
	// at once; more offers are dropped.
	maxPunchResponses = 8
	// maxPeersRemembered bounds the peers whose round trip is kept.
	maxPeersRemembered = 1024
	// punchTTL is the signalling TTL of PUNCH messages, in seconds.
	punchTTL = 10
)

type punchStrategy struct {
	a       *Agent
	slots   chan struct{} // responder punches under way
	limit   *node.RateLimiter
	offers  *prometheus.CounterVec // agent_punch_offers_total{result}
	legs    *prometheus.CounterVec // agent_punch_total{transport,result} (punchudp.go)
	retries prometheus.Counter     // agent_punch_retries_total
	// udpLate, when set (tests), moves our UDP punch datagrams this much
	// after the meeting time: a side that is late.
	udpLate func() time.Duration
	ctx     context.Context // ends when the agent closes
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	echoes  map[string]chan struct{} // signalling echoes awaiting their return (sigrtt.go)
	pending map[string]pendingPunch  // offers sent, awaiting the answer, by pipe id
	// What the last exchange with a peer showed: the signalling round trip
	// and the peer's clock uncertainty (both 0 before the first).
	rtt, peerUnc map[string]time.Duration
}

type pendingPunch struct {
	peer string
	ch   chan punch.Offer
}

// Results of peers' offers in agent_punch_offers_total.
const (
	offerOK      = "ok"      // punched, the pipe went to the application
	offerFailed  = "failed"  // answered, but no pipe
	offerRefused = "refused" // bad or unsafe offer, or a pair the plan rules out
	offerLimited = "limited" // rate or concurrency limit
)

func newPunchStrategy(a *Agent) (*punchStrategy, error) {
	if err := checkPunchTransports(a.cfg.PunchTransports); err != nil {
		return nil, err
	}
	legs, err := newPunchLegMetrics(a.cfg.Registry)
	if err != nil {
		return nil, err
	}
	p := &punchStrategy{a: a, legs: legs, slots: make(chan struct{}, maxPunchResponses),
		// Offers per sending node: as many as CONs (node.Config defaults).
		limit: node.NewRateLimiter(1, 5, 4096),
		offers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_punch_offers_total",
			Help: "Peers' PUNCH offers by result: ok (punched a pipe), failed, refused (bad, unsafe or ruled out by the plan), limited."}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "agent_punch_retries_total",
			Help: "Connects whose UDP punch went alone, heard nothing from the peer and was tried again with fresh ports."}),
		pending: map[string]pendingPunch{}, echoes: map[string]chan struct{}{},
		rtt: map[string]time.Duration{}, peerUnc: map[string]time.Duration{}}
	for _, r := range []string{offerOK, offerFailed, offerRefused, offerLimited} {
		p.offers.WithLabelValues(r)
	}
	if err := promreg.Register(a.cfg.Registry, "agent", p.offers, p.retries); err != nil {
		return nil, err
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// close stops the punches answering peers' offers and waits for them.
func (p *punchStrategy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

func (*punchStrategy) Name() string { return node.KindPunch }

// blocks picks the IPv4 blocks a punch uses: ours with a node port mapping
// (the first when none has one yet), and the peer's first.
func (p *punchStrategy) blocks(mine, to peeraddr.Address) (peeraddr.Block, peeraddr.Block, error) {
	if len(mine.IPv4) == 0 {
		return peeraddr.Block{}, peeraddr.Block{}, errors.New("we have no IPv4 route to punch from")
	}
	if len(to.IPv4) == 0 {
		return peeraddr.Block{}, peeraddr.Block{}, errors.New("the peer has no IPv4 block")
	}
	m := mine.IPv4[0]
	maps := p.a.NodeMappings()
	for _, b := range mine.IPv4 {
		if _, ok := maps[b.NIC]; ok {
			m = b
			break
		}
	}
	return m, to.IPv4[0], nil
}

// Plan skips the punch when the two NAT profiles rule it out.
func (p *punchStrategy) Plan(at node.Attempt) string {
	if d := p.decide(at.Mine, at.To); !d.OK {
		return d.Reason
	}
	return ""
}

// Explain says why the punch will run (agent plan).
func (p *punchStrategy) Explain(at node.Attempt) string { return p.decide(at.Mine, at.To).Reason }

// SignalTypes: PUNCH, and ECHO for the signalling round trip (sigrtt.go).
func (*punchStrategy) SignalTypes() []signal.Type {
	return []signal.Type{signal.TypePunch, signal.TypeEcho}
}

// minRetryLeft is the time a connect must have left for a second punch:
// a STUN round, the offer's round trip and the meeting lead, then Quiet.
const minRetryLeft = 3 * time.Second

// Connect sends the offer, waits for the answer and punches. A UDP punch
// that went alone and heard nothing from the peer is tried once more with
// fresh sockets and predictions, if the connect's deadline leaves time.
func (p *punchStrategy) Connect(ctx context.Context, at node.Attempt) (*node.SecureConn, error) {
	sc, err := p.connect(ctx, at)
	if err == nil || !errors.Is(err, punch.ErrQuiet) {
		return sc, err
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < minRetryLeft {
		return nil, err
	}
	p.retries.Inc()
	p.a.cfg.Log.Info("punch: no datagram from the peer; trying again with fresh ports", "peer", at.To.NodeID, "err", err)
	again := at
	again.PipeID = node.NewPipeID() // signalling takes one PUNCH per pipe id and sender
	sc, err2 := p.connect(ctx, again)
	if err2 != nil {
		return nil, fmt.Errorf("second punch: %w (first: %w)", err2, err)
	}
	return sc, nil
}

// connect is one punch: offer, answer, and the legs at the meeting time.
func (p *punchStrategy) connect(ctx context.Context, at node.Attempt) (*node.SecureConn, error) {
	f := p.plan(at.Mine, at.To)
	mine, peer := f.m4, f.t4
	local := netip.AddrPortFrom(mine.NIC, uint16(p.a.cfg.Port))
	var targets []netip.AddrPort
	if f.ok4 {
		var err error
		if targets, err = p.ownTargets(ctx, local, mine, peer); err != nil {
			if !f.ok6 {
				return nil, err
			}
			p.a.cfg.Log.Debug("punch: IPv4 leg dropped", "err", err)
			f.ok4 = false
		}
	}
	if !f.ok4 && !f.ok6 {
		return nil, fmt.Errorf("no punch: %s", p.decide(at.Mine, at.To).Reason)
	}
	var leg *udpLeg
	if f.ok4 {
		var noUDP string
		if leg, noUDP = p.prepareUDP(ctx, mine, peer); leg == nil {
			p.a.cfg.Log.Debug("punch: no UDP leg", "peer", at.To.NodeID, "why", noUDP)
		}
	}
	ck := p.a.clock
	p.mu.Lock()
	rtt, peerUnc := p.rtt[at.To.NodeID], p.peerUnc[at.To.NodeID]
	p.mu.Unlock()
	now := ck.Now()
	unc := ck.Uncertainty()
	// Before a first exchange the round trip and the peer's uncertainty are
	// not known: the offer then meets after MinLead plus our uncertainty,
	// and a peer that cannot make it (slow signalling, a worse clock)
	// answers with a later time.
	offer := punch.Offer{At: punch.MeetAt(now, rtt, unc, peerUnc).UnixMicro(), Sent: now.UnixMicro(),
		Uncertainty: unc.Microseconds(), Targets: targets, Targets6: f.own6()}
	if leg != nil {
		offer.UDP = leg.targets
	}
	ch := make(chan punch.Offer, 1)
	p.mu.Lock()
	p.pending[at.PipeID] = pendingPunch{peer: at.To.NodeID, ch: ch}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, at.PipeID)
		p.mu.Unlock()
	}()
	sent := time.Now()
	if err := p.send(ctx, at.To, at.PipeID, offer); err != nil {
		leg.close()
		return nil, err
	}
	var ans punch.Offer
	select {
	case ans = <-ch:
	case <-ctx.Done():
		leg.close()
		return nil, fmt.Errorf("no PUNCH answer: %w", ctx.Err())
	}
	took := time.Since(sent)
	p.mu.Lock()
	if len(p.rtt) >= maxPeersRemembered {
		clear(p.rtt)
		clear(p.peerUnc)
	}
	p.rtt[at.To.NodeID] = took
	p.peerUnc[at.To.NodeID] = ans.ClockUncertainty()
	p.mu.Unlock()
	meet := ans.MeetingTime()
	p.a.cfg.Log.Debug("punch: answer", "peer", at.To.NodeID, "signalling_rtt", took,
		"meet_in", meet.Sub(ck.Now()), "moved", ans.At != offer.At, "targets", ans.Targets, "targets6", ans.Targets6, "udp", ans.UDP)
	var legs []punchLeg
	if f.ok4 && len(ans.Targets) > 0 {
		legs = append(legs, punchLeg{local: dialFrom(local, mine), targets: ans.Targets, anyPort: !punch.ProfileOf(peer).Predictable()})
	}
	if l, ok := f.leg6(p.a.cfg.Port, ans.Targets6); ok {
		legs = append(legs, l)
	}
	udp := pairUDP(leg, ans.UDP)
	udp.setQuiet(ck.Uncertainty(), ans.ClockUncertainty(), took)
	return p.run(ctx, at.Peer, at.PipeID, legs, meet, udp)
}

// send sends a PUNCH message with our address.
func (p *punchStrategy) send(ctx context.Context, to peeraddr.Address, pipeID string, o punch.Offer) error {
	payload, err := o.Marshal()
	if err != nil {
		return err
	}
	mine, err := p.a.Address()
	if err != nil {
		return err
	}
	if err := p.a.sig.SendTo(ctx, to, signal.Body{Type: signal.TypePunch, PipeID: pipeID, TTL: punchTTL,
		SrcAddr: mine.String(), Payload: payload}); err != nil {
		return fmt.Errorf("send PUNCH: %w", err)
	}
	return nil
}

// ownTargets are the external endpoints of our punch port the peer dials:
// the NIC address behind the same router; a symmetric NAT's predicted next
// ports, from a fresh mapping of the punch port; else the node port's
// mapping.
func (p *punchStrategy) ownTargets(ctx context.Context, local netip.AddrPort, mine, peer peeraddr.Block) ([]netip.AddrPort, error) {
	if mine.Ext == peer.Ext {
		return []netip.AddrPort{local}, nil
	}
	if nat.Type(mine.NATType) == nat.SymmetricNAT {
		mapped, err := p.freshMapping(ctx, local)
		if err != nil {
			return nil, fmt.Errorf("our symmetric NAT's next port: %w", err)
		}
		pr := nat.Predictor{Type: nat.SymmetricNAT, Delta: nat.Delta{Type: nat.DeltaType(mine.DeltaType), Value: mine.DeltaValue}}
		ports, err := pr.Predict(nat.Mapping{Local: int(local.Port()), External: int(mapped.Port())}, int(local.Port()), punchPredictions)
		if err != nil {
			// Random ports: our SYN still opens a restricted-cone peer's
			// filter for our address; its port is a guess.
			return []netip.AddrPort{mapped}, nil
		}
		out := make([]netip.AddrPort, len(ports))
		for i, port := range ports {
			out[i] = netip.AddrPortFrom(mapped.Addr(), uint16(port))
		}
		return out, nil
	}
	if m, ok := p.a.NodeMappings()[local.Addr()]; ok {
		return []netip.AddrPort{m}, nil
	}
	return []netip.AddrPort{netip.AddrPortFrom(mine.Ext, mine.Port)}, nil
}

// dialFrom is the local endpoint the punch dials from: the node port,
// whose mapping the peer was told, except behind a symmetric NAT whose next
// port does not depend on the local port (independent or random delta):
// there any port gives the same external port, and a port the kernel picks
// is never held in TIME_WAIT by an earlier pipe to the same peer (which
// would leave this side unable to send its SYN).
func dialFrom(local netip.AddrPort, mine peeraddr.Block) netip.AddrPort {
	if nat.Type(mine.NATType) != nat.SymmetricNAT {
		return local
	}
	switch nat.DeltaType(mine.DeltaType) {
	case nat.DeltaIndependent, nat.DeltaRandom, nat.DeltaUnknown:
		return netip.AddrPortFrom(local.Addr(), 0)
	}
	return local
}

// freshMapping asks a STUN server over TCP from the punch port for its
// current mapping: on a symmetric NAT the next ports follow from it. The
// server the node port's keeper holds a connection to is busy (one
// connection per 4-tuple), so each server is tried in turn.
func (p *punchStrategy) freshMapping(ctx context.Context, local netip.AddrPort) (netip.AddrPort, error) {
	o := node.PortOptions()
	o.Local = local
	var errs []error
	for _, srv := range p.a.cfg.STUNServers {
		if !srv.Addr().Is4() {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, stun.DefaultTimeout)
		c, err := stun.DialTCPWith(dctx, p.a.cfg.Net, srv, o)
		if err != nil {
			cancel()
			errs = append(errs, err)
			continue
		}
		r, err := c.Do(dctx, stun.Request{Server: srv})
		cancel()
		_ = c.Abort() // no TIME_WAIT: the next punch may ask again
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return r.Mapped, nil
	}
	return netip.AddrPort{}, fmt.Errorf("no STUN server answered over TCP from %s: %w", local, errors.Join(errs...))
}

// run punches every leg (one per address family, and over UDP with udp,
// punchudp.go) at meet, at once, and returns the first authenticated pipe.
func (p *punchStrategy) run(ctx context.Context, peer [identity.KeySize]byte, pipeID string, legs []punchLeg, meet time.Time, udp *udpRun) (*node.SecureConn, error) {
	return p.race(ctx, peer, pipeID, legs, meet, udp)
}

// HandleSignal takes PUNCH answers for our offers, and offers from peers.
func (p *punchStrategy) HandleSignal(m *signal.Message) {
	if m.Type == signal.TypeEcho {
		p.echoed(m)
		return
	}
	o, err := punch.ParseOffer(m.Payload)
	if err != nil {
		p.a.cfg.Log.Info("PUNCH dropped", "from", m.FromID(), "err", err)
		p.offers.WithLabelValues(offerRefused).Inc()
		return
	}
	if o.Answer {
		p.mu.Lock()
		pp, ok := p.pending[m.PipeID]
		p.mu.Unlock()
		if !ok || pp.peer != m.FromID() {
			p.a.cfg.Log.Info("PUNCH answer for no offer of ours dropped", "from", m.FromID())
			return
		}
		select {
		case pp.ch <- o:
		default:
		}
		return
	}
	if !p.limit.Allow(m.FromID()) {
		p.a.cfg.Log.Info("PUNCH offer dropped: rate limit", "from", m.FromID())
		p.offers.WithLabelValues(offerLimited).Inc()
		return
	}
	from, err := p.checkOffer(m, o)
	if err != nil {
		p.a.cfg.Log.Info("PUNCH offer dropped", "from", m.FromID(), "err", err)
		p.offers.WithLabelValues(offerRefused).Inc()
		return
	}
	select {
	case p.slots <- struct{}{}:
	default:
		p.a.cfg.Log.Info("PUNCH offer dropped: too many punches under way", "from", m.FromID())
		p.offers.WithLabelValues(offerLimited).Inc()
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer func() { <-p.slots }()
		if err := p.respond(m, from, o); err != nil {
			p.a.cfg.Log.Info("punch for a peer's offer failed", "from", m.FromID(), "err", err)
			p.offers.WithLabelValues(offerFailed).Inc()
			return
		}
		p.offers.WithLabelValues(offerOK).Inc()
	}()
}

// checkOffer refuses an offer we must not act on: a sender address that is
// not the sender's, targets that are not the sender's external (or, behind
// our router, NIC) addresses, which would make us dial third parties, or a
// pair the plan rules out.
func (p *punchStrategy) checkOffer(m *signal.Message, o punch.Offer) (peeraddr.Address, error) {
	from, err := peeraddr.Parse(m.SrcAddr)
	if err != nil {
		return from, err
	}
	if from.NodeID != m.FromID() {
		return from, fmt.Errorf("the address is node %s's", from.NodeID)
	}
	mine, err := p.a.Address()
	if err != nil {
		return from, err
	}
	ok := map[netip.Addr]bool{}
	for _, b := range from.IPv4 {
		same := sameRouterBlock(b, mine.IPv4)
		// A private external address would point our dials into our own
		// network: only behind our router are LAN addresses the peer's.
		if same || !(b.Ext.IsPrivate() || b.Ext.IsLinkLocalUnicast() || cgnat.Contains(b.Ext)) {
			ok[b.Ext] = true
		}
		if same {
			ok[b.NIC] = true
		}
	}
	for _, t := range append(o.Targets[:len(o.Targets):len(o.Targets)], o.UDP...) {
		if !ok[t.Addr()] {
			return from, fmt.Errorf("target %s is not an address of the sender's", t)
		}
	}
	if err := checkTargets6(from, mine, o.Targets6); err != nil {
		return from, err
	}
	if d := p.decide(mine, from); !d.OK {
		return from, fmt.Errorf("plan: %s", d.Reason)
	}
	return from, nil
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func sameRouterBlock(b peeraddr.Block, mine []peeraddr.Block) bool {
	for _, x := range mine {
		if x.Ext == b.Ext {
			return true
		}
	}
	return false
}

// respond answers an offer and punches; the pipe goes to the application
// like any inbound pipe.
func (p *punchStrategy) respond(m *signal.Message, from peeraddr.Address, o punch.Offer) error {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	mineAddr, err := p.a.Address()
	if err != nil {
		return err
	}
	f := p.plan(mineAddr, from)
	mine, peer := f.m4, f.t4
	local := netip.AddrPortFrom(mine.NIC, uint16(p.a.cfg.Port))
	var legs []punchLeg
	var targets []netip.AddrPort
	if f.ok4 && len(o.Targets) > 0 {
		if targets, err = p.ownTargets(ctx, local, mine, peer); err == nil {
			legs = append(legs, punchLeg{local: dialFrom(local, mine), targets: o.Targets, anyPort: !punch.ProfileOf(peer).Predictable()})
		} else if !f.ok6 || len(o.Targets6) == 0 {
			return err
		}
	}
	var targets6 []netip.AddrPort
	if l, ok := f.leg6(p.a.cfg.Port, o.Targets6); ok {
		legs = append(legs, l)
		targets6 = f.own6()
	}
	if len(legs) == 0 {
		return fmt.Errorf("no punch: %s", p.decide(mineAddr, from).Reason)
	}
	var leg *udpLeg // before the clock is read: its STUN takes a round trip
	if len(o.UDP) > 0 && f.ok4 {
		var noUDP string
		if leg, noUDP = p.prepareUDP(ctx, mine, peer); leg == nil {
			p.a.cfg.Log.Debug("punch: no UDP leg", "peer", m.FromID(), "why", noUDP)
		}
	}
	ck := p.a.clock
	now, unc := ck.Now(), ck.Uncertainty()
	meet := o.MeetingTime()
	oneWay := max(now.Sub(o.SentTime()), 0)
	if punch.TooLate(now, meet, oneWay, unc) {
		meet = punch.MeetAt(now, 2*oneWay, unc, o.ClockUncertainty())
		p.a.cfg.Log.Debug("punch: offer came too late; new meeting time", "from", m.FromID(), "one_way", oneWay, "meet_in", meet.Sub(now))
	}
	ans := punch.Offer{Answer: true, At: meet.UnixMicro(), Sent: now.UnixMicro(), Uncertainty: unc.Microseconds(), Targets: targets, Targets6: targets6}
	if leg != nil {
		ans.UDP = leg.targets
	}
	if err := p.send(ctx, from, m.PipeID, ans); err != nil {
		leg.close()
		return err
	}
	udp := pairUDP(leg, o.UDP)
	udp.setQuiet(unc, o.ClockUncertainty(), 2*oneWay)
	sc, err := p.run(ctx, m.From, m.PipeID, legs, meet, udp)
	if err != nil {
		return err
	}
	p.a.inbound(sc, node.Hello{PipeID: m.PipeID, Kind: node.KindPunch})
	return nil
}
