package agent

import (
	"fmt"

	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
)

// Plan says what a connect to the peer at addr would try, in which order,
// and why, without sending anything.
func (a *Agent) Plan(addr string, strategies ...string) ([]node.Step, error) {
	to, err := peeraddr.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if a.node == nil {
		return nil, fmt.Errorf("agent: not started")
	}
	steps, err := a.node.Plan(to, node.Options{Strategies: strategies})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return steps, nil
}
