package natmatrix

import (
	"github.com/p2pd-go/p2pd/pkg/nat"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/punch"
)

// Expected is the strategy the plan rules predict to win when an agent
// behind from connects to one behind to: direct where the peer accepts
// unsolicited connections (open, full cone), reverse where we do, the punch
// where pkg/punch's plan says both NATs can be punched, else the relay.
// (UDP-blocked NATs TCP like a port-restricted cone.)
func Expected(from, to natlab.Behaviour) string {
	switch {
	case accepts(to):
		return node.Direct
	case accepts(from):
		return node.Reverse
	case punch.Plan(profile(from), profile(to)).OK:
		return node.KindPunch
	}
	return node.KindRelay
}

func accepts(b natlab.Behaviour) bool { return b == natlab.Open || b == natlab.FullCone }

// profile is what an agent behind b advertises: the lab's ground truth.
func profile(b natlab.Behaviour) punch.Profile {
	t := b.Truth()
	return punch.Profile{Type: nat.Type(t.NATType), Delta: nat.Delta{Type: nat.DeltaType(t.DeltaType), Value: t.DeltaValue}}
}
