package agent

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/p2pd-go/p2pd/pkg/punch"
)

// Punching over IPv6. Where both peers have global IPv6 addresses, each
// knows the other's endpoint exactly (its address and node port: no
// translation), and a stateful firewall lets the peer's SYN in once its
// own SYN to the peer has gone out: a TCP simultaneous open needs no port
// prediction. So a punch whose IPv6 plan allows it offers its IPv6
// endpoint too (Offer.Targets6) and runs an IPv6 leg beside the IPv4 one;
// the first leg whose connection completes the Noise handshake wins.

// punchPlan is a punch's plan per address family.
type punchPlan struct {
	ok4, ok6   bool
	m4, t4     peeraddr.Block // IPv4 blocks, ours and the peer's (ok4)
	m6, t6     peeraddr.Block // IPv6 blocks (ok6)
	why4, why6 string
	has6       bool // both sides have a global IPv6 block
}

// plan works out both families for a punch between the two addresses.
func (p *punchStrategy) plan(mine, to peeraddr.Address) punchPlan {
	var f punchPlan
	if m, t, err := p.blocks(mine, to); err != nil {
		f.why4 = err.Error()
	} else {
		d := p.decideLegs(m, t) // TCP and UDP (punchudp.go)
		f.ok4, f.why4, f.m4, f.t4 = d.OK, d.Reason, m, t
	}
	if m, t, ok := blocks6(mine, to); ok {
		d := punch.PlanIPv6(punch.ProfileOf(m), punch.ProfileOf(t))
		f.has6, f.ok6, f.why6, f.m6, f.t6 = true, d.OK, d.Reason, m, t
	}
	return f
}

// decide is the plan for a punch between the two addresses, both families
// together: it runs when either can work.
func (p *punchStrategy) decide(mine, to peeraddr.Address) punch.Decision {
	if p.a.sig == nil || p.a.clock == nil {
		return punch.Decision{Reason: "no signalling or clock"}
	}
	f := p.plan(mine, to)
	switch {
	case f.ok4 && f.ok6:
		return punch.Decision{OK: true, Reason: "over IPv4 and IPv6 at once; IPv4: " + f.why4 + "; IPv6: " + f.why6}
	case f.ok6:
		return punch.Decision{OK: true, Reason: "over IPv6 only: " + f.why6 + "; not over IPv4: " + f.why4}
	case f.ok4 && f.has6:
		return punch.Decision{OK: true, Reason: f.why4 + "; not over IPv6: " + f.why6}
	case f.ok4:
		return punch.Decision{OK: true, Reason: f.why4}
	case f.has6:
		return punch.Decision{Reason: f.why4 + "; and over IPv6 " + f.why6}
	}
	return punch.Decision{Reason: f.why4}
}

// blocks6 picks the first IPv6 block with a global address on each side.
func blocks6(mine, to peeraddr.Address) (peeraddr.Block, peeraddr.Block, bool) {
	m, ok1 := global6(mine.IPv6)
	t, ok2 := global6(to.IPv6)
	return m, t, ok1 && ok2
}

func global6(bs []peeraddr.Block) (peeraddr.Block, bool) {
	for _, b := range bs {
		if isGlobal6(b.Ext) && b.Port != 0 {
			return b, true
		}
	}
	return peeraddr.Block{}, false
}

func isGlobal6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && a.IsGlobalUnicast() && !a.IsPrivate()
}

// punchLeg is one family's part of a punch: dial targets from local.
type punchLeg struct {
	local   netip.AddrPort
	targets []netip.AddrPort
	anyPort bool // the peer's NAT picks unpredictable ports
}

// own6 is our IPv6 target for an offer or answer (nil when the plan has no
// IPv6 leg): our global address and the node port, as the block says.
func (f punchPlan) own6() []netip.AddrPort {
	if !f.ok6 {
		return nil
	}
	return []netip.AddrPort{netip.AddrPortFrom(f.m6.Ext, f.m6.Port)}
}

// leg6 is the IPv6 leg toward the peer's IPv6 targets (false without one).
func (f punchPlan) leg6(port int, peerTargets []netip.AddrPort) (punchLeg, bool) {
	if !f.ok6 || len(peerTargets) == 0 {
		return punchLeg{}, false
	}
	return punchLeg{local: netip.AddrPortFrom(f.m6.NIC, uint16(port)), targets: peerTargets}, true
}

// checkTargets6 refuses IPv6 targets that are not global addresses of the
// sender's IPv6 blocks, or that come while we would not punch over IPv6.
func checkTargets6(from, mine peeraddr.Address, targets []netip.AddrPort) error {
	if len(targets) == 0 {
		return nil
	}
	ok := map[netip.Addr]bool{}
	for _, b := range from.IPv6 {
		if isGlobal6(b.Ext) {
			ok[b.Ext] = true
		}
	}
	for _, t := range targets {
		if !ok[t.Addr()] {
			return fmt.Errorf("IPv6 target %s is not a global address of the sender's", t)
		}
	}
	if _, _, ok := blocks6(mine, from); !ok {
		return errors.New("IPv6 targets, but we have no global IPv6 block")
	}
	return nil
}
