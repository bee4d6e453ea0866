package node

import (
	"context"
	"fmt"
	"time"

	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
)

// Try runs one strategy by name outside a race, with a pipe id the caller
// chose (so the peer can be told about it beforehand): pkg/agent uses it to
// move a relayed pipe to a direct path. A plan that rules the strategy out
// returns an error wrapping ErrSkipped. timeout <= 0 uses the strategy's
// deadline.
func (n *Node) Try(ctx context.Context, to peeraddr.Address, name, pipeID string, timeout time.Duration) (*SecureConn, error) {
	s := n.strategy(name)
	if s == nil {
		return nil, fmt.Errorf("node: try: unknown strategy %q (configured: %v)", name, n.StrategyNames())
	}
	peer, err := identity.ParseNodeID(to.NodeID)
	if err != nil {
		return nil, fmt.Errorf("node: try: %w", err)
	}
	a := Attempt{To: to, Peer: peer, Mine: n.myAddress(), PipeID: pipeID}
	if p, ok := s.(Planner); ok {
		if why := p.Plan(a); why != "" {
			return nil, fmt.Errorf("node: try %s: %w: %s", name, ErrSkipped, why)
		}
	}
	if timeout <= 0 {
		timeout = n.deadline(name)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sc, err := s.Connect(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("node: try %s: %w", name, err)
	}
	return sc, nil
}

// PlanOf is why the plan rules strategy name out for a connect to to (""
// when it may run).
func (n *Node) PlanOf(to peeraddr.Address, name string) string {
	s := n.strategy(name)
	if s == nil {
		return "unknown strategy"
	}
	p, ok := s.(Planner)
	if !ok {
		return ""
	}
	peer, err := identity.ParseNodeID(to.NodeID)
	if err != nil {
		return err.Error()
	}
	return p.Plan(Attempt{To: to, Peer: peer, Mine: n.myAddress()})
}

// NewPipeID returns a fresh pipe id (15 characters, like P2PD's).
func NewPipeID() string { return newPipeID() }
