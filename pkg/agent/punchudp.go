package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/p2pd-go/p2pd/internal/promreg"
	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/nat"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/p2pd-go/p2pd/pkg/punch"
	"github.com/prometheus/client_golang/prometheus"
)

// The punch runs two legs at once toward the same meeting time: TCP
// simultaneous open from the node port (punch.Run) and UDP from a socket of
// its own that carries a QUIC stream (punch.RunUDP). The offer carries the
// endpoints of both. Whatever opens first on either leg gets the Noise
// handshake; the first handshake to finish wins and the other leg is
// cancelled, its sockets closed. The initiator runs one handshake at a time
// and none after a win, so the responder, which serves what opens on both
// legs through the node, sees at most one succeed.

// udpMappingTimeout bounds the STUN round of the UDP punch socket: the
// offer (or answer) waits for it, and a slow one would push the meeting
// back; without a mapping the punch runs over TCP alone.
const udpMappingTimeout = 700 * time.Millisecond

// Punch transports (Config.PunchTransports, agent_punch_total{transport}).
const (
	PunchTCP = "tcp"
	PunchUDP = "udp"
)

// Results of agent_punch_total.
const (
	legOK      = "ok"      // this leg's pipe won
	legLost    = "lost"    // the other leg won first; this one was closed
	legFailed  = "failed"  // no pipe on either leg
	legSkipped = "skipped" // not run: the plan, the peer or a failed STUN mapping ruled it out
)

func newPunchLegMetrics(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_punch_total",
		Help: "Punch legs by transport (tcp, udp) and result: ok (its pipe won), lost (the other transport won first), failed, skipped (ruled out by the plan, the peer, or no UDP mapping)."},
		[]string{"transport", "result"})
	for _, t := range []string{PunchTCP, PunchUDP} {
		for _, r := range []string{legOK, legLost, legFailed, legSkipped} {
			v.WithLabelValues(t, r)
		}
	}
	if err := promreg.Register(reg, "agent", v); err != nil {
		return nil, err
	}
	return v, nil
}

// checkPunchTransports validates Config.PunchTransports.
func checkPunchTransports(ts []string) error {
	for _, t := range ts {
		if t != PunchTCP && t != PunchUDP {
			return fmt.Errorf("agent: punch transport %q: want %q or %q", t, PunchTCP, PunchUDP)
		}
	}
	return nil
}

// wants reports whether the punch may use transport t.
func (p *punchStrategy) wants(t string) bool {
	if len(p.a.cfg.PunchTransports) == 0 {
		return true
	}
	for _, x := range p.a.cfg.PunchTransports {
		if x == t {
			return true
		}
	}
	return false
}

// decideLegs is the plan of both legs; the punch runs when either may.
func (p *punchStrategy) decideLegs(m, t peeraddr.Block) punch.Decision {
	mp, tp := punch.ProfileOf(m), punch.ProfileOf(t)
	tcp, udp := punch.Plan(mp, tp), punch.PlanUDP(mp, tp)
	if !p.wants(PunchTCP) {
		tcp = punch.Decision{Reason: "TCP punching is off"}
	}
	if !p.wants(PunchUDP) {
		udp = punch.Decision{Reason: "UDP punching is off"}
	}
	switch {
	case tcp.OK && udp.OK && punch.UDPAlone(mp, tp):
		return punch.Decision{OK: true, Reason: udp.Reason + "; UDP alone (a symmetric NAT's port sequence cannot serve two legs' predictions; TCP if UDP gets no mapping)"}
	case tcp.OK && udp.OK:
		return punch.Decision{OK: true, Reason: tcp.Reason + "; TCP and UDP race"}
	case tcp.OK:
		return punch.Decision{OK: true, Reason: tcp.Reason + "; TCP only (UDP: " + udp.Reason + ")"}
	case udp.OK:
		return punch.Decision{OK: true, Reason: udp.Reason + "; UDP only (TCP: " + tcp.Reason + ")"}
	}
	if !p.wants(PunchTCP) {
		return punch.Decision{Reason: udp.Reason + " (TCP punching is off)"}
	}
	return tcp
}

// udpLeg is our side of a UDP punch: its socket and the endpoints the
// peer is told.
type udpLeg struct {
	sock        *punch.UDPSocket
	targets     []netip.AddrPort
	peerAnyPort bool // the peer's NAT picks unpredictable ports
	alone       bool // no IPv4 TCP leg beside it (punch.UDPAlone)
}

func (l *udpLeg) close() {
	if l != nil {
		_ = l.sock.Close()
	}
}

// prepareUDP opens the UDP punch socket and learns its external endpoints:
// the NIC address behind the same router as the peer; else its mapping by
// STUN from that socket, or behind a symmetric NAT the ports predicted from
// it. It returns why not when the plan or STUN rules UDP out.
func (p *punchStrategy) prepareUDP(ctx context.Context, mine, peer peeraddr.Block) (*udpLeg, string) {
	if !p.wants(PunchUDP) {
		return nil, "UDP punching is off"
	}
	if d := punch.PlanUDP(punch.ProfileOf(mine), punch.ProfileOf(peer)); !d.OK {
		return nil, d.Reason
	}
	s, err := punch.ListenUDP(ctx, p.a.cfg.Net, netip.AddrPortFrom(mine.NIC, 0))
	if err != nil {
		return nil, err.Error()
	}
	local := s.LocalAddr()
	anyPort := !punch.ProfileOf(peer).Predictable()
	alone := punch.UDPAlone(punch.ProfileOf(mine), punch.ProfileOf(peer))
	if mine.Ext == peer.Ext {
		return &udpLeg{sock: s, targets: []netip.AddrPort{local}}, ""
	}
	mctx, cancel := context.WithTimeout(ctx, udpMappingTimeout)
	mapped, err := s.Mapping(mctx, p.a.cfg.STUNServers)
	cancel()
	if err != nil {
		_ = s.Close()
		return nil, err.Error()
	}
	targets := []netip.AddrPort{mapped}
	if nat.Type(mine.NATType) == nat.SymmetricNAT {
		// The mapping just made was toward the STUN server: the peer's
		// datagrams meet the next one, which the delta predicts.
		pr := nat.Predictor{Type: nat.SymmetricNAT, Delta: nat.Delta{Type: nat.DeltaType(mine.DeltaType), Value: mine.DeltaValue}}
		if ports, err := pr.Predict(nat.Mapping{Local: int(local.Port()), External: int(mapped.Port())}, int(local.Port()), punchPredictions); err == nil {
			targets = targets[:0]
			for _, port := range ports {
				targets = append(targets, netip.AddrPortFrom(mapped.Addr(), uint16(port)))
			}
		}
	}
	return &udpLeg{sock: s, targets: targets, peerAnyPort: anyPort, alone: alone}, ""
}

// udpRun is the UDP leg of one punch: our socket and the peer's endpoints.
type udpRun struct {
	leg     *udpLeg
	targets []netip.AddrPort
	anyPort bool          // the peer's NAT picks unpredictable ports
	quiet   time.Duration // punch.UDPConfig.Quiet: set when UDP goes alone
}

// udpQuietBase is the part of a UDP-alone punch's Quiet that is not clock
// uncertainty or round trip: time for both sides' first datagrams to cross.
const udpQuietBase = time.Second

// setQuiet sets how long after the meeting a UDP punch that goes alone
// waits for the peer's first datagram before it gives up so the connect can try
// again with fresh ports: a symmetric NAT that gets the peer's datagrams
// before it has sent its own (one side was late by more than the one-way
// delay) maps its own flows to other ports than the predicted ones (Linux
// conntrack, as in the lab, steps around the tuples those datagrams
// took), and that punch never meets however long it runs.
func (u *udpRun) setQuiet(unc, peerUnc, rtt time.Duration) {
	if u.alone() {
		u.quiet = udpQuietBase + unc + peerUnc + rtt
	}
}

// alone says the TCP leg must not run beside this one.
func (u *udpRun) alone() bool { return u != nil && u.leg.alone }

// pairUDP joins our leg and the peer's UDP targets; without either there
// is no UDP leg (ours is closed).
func pairUDP(leg *udpLeg, peerTargets []netip.AddrPort) *udpRun {
	if leg == nil {
		return nil
	}
	if len(peerTargets) == 0 {
		leg.close()
		return nil
	}
	return &udpRun{leg: leg, targets: peerTargets, anyPort: leg.peerAnyPort}
}

// transportOf names the transport a pipe runs over.
func transportOf(sc *node.SecureConn) string {
	if _, ok := sc.LocalAddr().(*net.UDPAddr); ok {
		return PunchUDP
	}
	return PunchTCP
}

// race punches at meet over TCP (every leg: one per address family) and,
// with udp, over UDP, and returns the first authenticated pipe.
func (p *punchStrategy) race(ctx context.Context, peer [identity.KeySize]byte, pipeID string, legs []punchLeg, meet time.Time, udp *udpRun) (*node.SecureConn, error) {
	n := p.a.node
	log := p.a.cfg.Log
	peerID := identity.NodeID(peer)
	initiator := punch.Initiator(p.a.ID(), peerID)
	tcp := p.wants(PunchTCP)
	if !tcp {
		legs = nil
	}
	if udp.alone() {
		// A symmetric IPv4 NAT: UDP goes alone over IPv4 (an IPv6 leg
		// shares no NAT with it). Both sides know both profiles and
		// whether both offered UDP, so they agree on it.
		var v6 []punchLeg
		for _, l := range legs {
			if l.local.Addr().Is6() {
				v6 = append(v6, l)
			}
		}
		legs = v6
	}
	if !tcp && udp == nil {
		return nil, fmt.Errorf("no UDP punch (the peer offered none or our socket has no mapping) and TCP punching is off")
	}
	if len(legs) == 0 && udp == nil {
		return nil, errors.New("no punch: the peer offered no endpoint of a family we punch over")
	}
	var await <-chan *node.SecureConn
	if !initiator {
		ch, done := n.Await(pipeID, peerID)
		defer done()
		await = ch
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hello := node.Hello{PipeID: pipeID, Kind: node.KindPunch}
	var (
		gate  sync.Mutex // one initiator handshake at a time
		won   *node.SecureConn
		wonBy string
	)
	secure := func(transport string) func(net.Conn) bool {
		return func(c net.Conn) bool {
			if !initiator {
				n.Serve(c) // its pipe comes back through await
				return false
			}
			gate.Lock()
			defer gate.Unlock()
			if won != nil || pctx.Err() != nil {
				c.Close()
				return false
			}
			sc, err := n.Secure(pctx, c, peer, hello)
			if err != nil {
				log.Debug("punch: handshake", "transport", transport, "remote", c.RemoteAddr(), "err", err)
				return false
			}
			won, wonBy = sc, transport
			cancel() // the other legs stop
			return true
		}
	}
	type result struct {
		transport string
		stats     string
		err       error
	}
	res := make(chan result, len(legs)+1)
	if len(legs) > 0 {
		// Connections from the peer's endpoints that reach our listener
		// are the punch's. From a NAT whose ports are unpredictable the SYN
		// comes from a port nobody knew: then any port of its addresses.
		want := map[netip.AddrPort]bool{}
		hosts := map[netip.Addr]bool{}
		for _, l := range legs {
			for _, t := range l.targets {
				want[t] = true
				if l.anyPort {
					hosts[t.Addr()] = true
				}
			}
		}
		accepted, release := n.Claim(func(ap netip.AddrPort) bool { return want[ap] || hosts[ap.Addr()] })
		defer release()
		for _, l := range legs {
			o := node.PortOptions()
			o.Local = l.local
			cfg := punch.Config{Net: p.a.cfg.Net, Options: o, Targets: l.targets, At: meet, Now: p.a.clock.Now,
				Accepted: accepted, Log: log}
			go func() {
				st, err := punch.Run(pctx, cfg, secure(PunchTCP))
				if err != nil {
					err = fmt.Errorf("tcp from %s: %w (%d dials, %d refused, %d via the listener)", l.local, err, st.Dials, st.Refused, st.Accepted)
				}
				res <- result{PunchTCP, fmt.Sprintf("%+v", st), err}
			}()
		}
	} else {
		p.legs.WithLabelValues(PunchTCP, legSkipped).Inc()
	}
	running := len(legs)
	if udp != nil {
		at := meet
		if p.udpLate != nil {
			at = at.Add(p.udpLate())
		}
		cfg := punch.UDPConfig{Socket: udp.leg.sock, PipeID: pipeID, Targets: udp.targets, AnyPort: udp.anyPort,
			Initiator: initiator, At: at, Quiet: udp.quiet, Now: p.a.clock.Now, Log: log}
		running++
		go func() {
			st, err := punch.RunUDP(pctx, cfg, secure(PunchUDP))
			if err != nil {
				err = fmt.Errorf("udp: %w", err)
			}
			res <- result{PunchUDP, st.String(), err}
		}()
	} else {
		p.legs.WithLabelValues(PunchUDP, legSkipped).Inc()
	}
	var errs []error
	ran := map[string][]string{} // transport → each leg's stats
	for running > 0 {
		select {
		case sc := <-await: // nil channel for the initiator
			await = nil
			won, wonBy = sc, transportOf(sc)
			cancel()
		case r := <-res:
			running--
			ran[r.transport] = append(ran[r.transport], r.stats)
			if r.err != nil {
				errs = append(errs, r.err)
			}
		}
	}
	if won == nil && await != nil {
		select { // the pipe may have come as the punch ended
		case sc := <-await:
			won, wonBy = sc, transportOf(sc)
		default:
		}
	}
	for t := range ran {
		switch {
		case t == wonBy:
			p.legs.WithLabelValues(t, legOK).Inc()
		case won != nil:
			p.legs.WithLabelValues(t, legLost).Inc()
		default:
			p.legs.WithLabelValues(t, legFailed).Inc()
		}
	}
	log.Debug("punch: done", "peer", peerID, "initiator", initiator, "won", wonBy, "legs", ran,
		"since_meeting", p.a.clock.Now().Sub(meet), "err", errs)
	if won == nil {
		if len(errs) == 0 {
			return nil, errors.New("punch ended without a pipe")
		}
		return nil, errors.Join(errs...)
	}
	log.Info("punch: pipe", "peer", peerID, "transport", wonBy, "remote", won.RemoteAddr(), "pipe_id", pipeID)
	return won, nil
}
