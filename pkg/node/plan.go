package node

import (
	"fmt"
	"strings"
	"time"

	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
)

// Explainer is implemented by strategies that can say, before anything is
// sent, what they will do for an attempt their plan does not skip.
type Explainer interface {
	Explain(a Attempt) string
}

// Step is one strategy in a plan: whether it runs, when, for how long, and
// why.
type Step struct {
	Strategy string        `json:"strategy"`
	Run      bool          `json:"run"`
	Start    time.Duration `json:"start_ns"`    // its staggered start (0 if skipped)
	Deadline time.Duration `json:"deadline_ns"` // how long it may take (0 if skipped)
	Why      string        `json:"why"`
}

// Plan says what ConnectWith(to, o) would try, in which order, and why,
// without sending anything: the same skip rules and staggered starts.
func (n *Node) Plan(to peeraddr.Address, o Options) ([]Step, error) {
	peer, err := identity.ParseNodeID(to.NodeID)
	if err != nil {
		return nil, fmt.Errorf("node: plan: %w", err)
	}
	names := o.Strategies
	if len(names) == 0 {
		names = n.StrategyNames()
	}
	a := Attempt{To: to, Peer: peer, Mine: n.myAddress()}
	var steps []Step
	started := 0
	for _, name := range names {
		s := n.strategy(name)
		if s == nil {
			return nil, fmt.Errorf("node: plan: unknown strategy %q (configured: %v)", name, n.StrategyNames())
		}
		st := Step{Strategy: name}
		if p, ok := s.(Planner); ok {
			if why := p.Plan(a); why != "" {
				st.Why = why
				steps = append(steps, st)
				continue
			}
		}
		st.Run = true
		if !o.NoStagger {
			st.Start = n.delay(name, started)
		}
		st.Deadline = o.Timeout
		if st.Deadline <= 0 {
			st.Deadline = n.deadline(name)
		}
		started++
		st.Why = "nothing in the two addresses rules it out"
		if e, ok := s.(Explainer); ok {
			st.Why = e.Explain(a)
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// Explain lists the addresses direct connect races.
func (d directStrategy) Explain(a Attempt) string {
	cands := Candidates(a.To, a.Mine)
	if len(cands) > maxCandidates {
		cands = cands[:maxCandidates]
	}
	s := make([]string, len(cands))
	for i, c := range cands {
		s[i] = c.String()
	}
	return "the peer accepts unsolicited connections (open or full cone, or behind our router): races a TCP connection to " + strings.Join(s, ", ")
}

// Explain says what reverse connect asks for.
func (reverseStrategy) Explain(Attempt) string {
	return "we accept unsolicited connections: asks the peer over signalling (CON) to connect back to our address"
}
