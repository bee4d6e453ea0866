package api

import (
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/p2pd-go/p2pd/pkg/node"
)

// planner is a Backend that can plan a connect (*agent.Agent).
type planner interface {
	Plan(addr string, strategies ...string) ([]node.Step, error)
}

// plan answers /p2p/plan/<addr>: what a connect to addr would try, in
// which order and why, before anything is sent.
func (s *Server) plan(c echo.Context) error {
	p, ok := s.cfg.Backend.(planner)
	if !ok {
		return fail(c, errNoMethod, "this agent cannot plan connects")
	}
	seg, err := segments(c, 2)
	if err != nil || len(seg) == 0 || seg[0] == "" {
		return fail(c, errBadInput, "usage: /p2p/plan/<peer address>")
	}
	addr := strings.Join(seg, "/")
	steps, err := p.Plan(addr)
	if err != nil {
		return fail(c, errBadInput, err.Error())
	}
	type step struct {
		node.Step
		StartText    string `json:"start"`
		DeadlineText string `json:"deadline"`
	}
	out := make([]step, len(steps))
	for i, st := range steps {
		out[i] = step{Step: st, StartText: st.Start.String(), DeadlineText: st.Deadline.String()}
	}
	return reply(c, map[string]any{"addr": addr, "plan": out, "error": errOK})
}
