package natmatrix

import (
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/node"
)

// Expected is the strategy the plan rules predict to win when an agent
// behind from connects to one behind to: direct where the peer accepts
// unsolicited connections (open, full cone), reverse where we do, else the
// relay. (UDP-blocked NATs TCP like a port-restricted cone.)
func Expected(from, to natlab.Behaviour) string {
	switch {
	case accepts(to):
		return node.Direct
	case accepts(from):
		return node.Reverse
	}
	return node.KindRelay
}

func accepts(b natlab.Behaviour) bool { return b == natlab.Open || b == natlab.FullCone }
