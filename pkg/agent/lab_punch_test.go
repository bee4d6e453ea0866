package agent_test

import (
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/metricstest"

	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/clock"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/node"
)

// waitClock waits until the agent's clock has synced from source: the
// stack's SNTP (stund --ntp), or, where UDP is blocked, the signalling
// round trip.
func waitClock(t *testing.T, a *agenttest.Agent, source clock.Source) clock.Status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := a.Clock().Status()
		if st.Source == source {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent clock never synced from %s: %+v", source, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// punchPair connects two agents behind NATs where neither direct nor
// reverse connect can work, so the plan skips both and the punch wins:
// each way twice, so the later punches meet the 4-tuples of the earlier,
// closed pipes still in TIME_WAIT on one side.
func punchPair(t *testing.T, ab, bb natlab.Behaviour, change func(*agent.Config)) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	// 10 ms each way on each router's link: 40 ms between the peers, as
	// in the NAT matrix.
	link := natlab.Link{Delay: 10 * time.Millisecond}
	a := agenttest.StartAgentWith(t, lab.AddRouter("ra", ab, link).AddHost("a"), s, change)
	b := agenttest.StartAgent(t, lab.AddRouter("rb", bb, link).AddHost("b"), s)
	for _, x := range []struct {
		ag *agenttest.Agent
		bh natlab.Behaviour
	}{{a, ab}, {b, bb}} {
		src := clock.SourceNTP
		if x.bh == natlab.UDPBlocked {
			src = clock.SourceSignallingRTT
		}
		st := waitClock(t, x.ag, src)
		t.Logf("%s clock: %s, offset %s ± %s", x.bh, st.Source, st.Offset, st.Uncertainty)
	}
	for _, dir := range []struct {
		name     string
		from, to *agenttest.Agent
	}{{"a to b", a, b}, {"b to a", b, a}, {"a to b again", a, b}, {"b to a again", b, a}} {
		t.Run(dir.name, func(t *testing.T) {
			connect(t, dir.from, dir.to, node.KindPunch)
			// Exactly one pipe survives: the peer got no second one.
			noSecondPipe(t, dir.to)
			// The answering side counted the offer it punched for.
			if got := counterValue(t, dir.to, "agent_punch_offers_total", "result", "ok"); got < 1 {
				t.Errorf("agent_punch_offers_total{result=ok} = %v on the answering side", got)
			}
			metricstest.Lint(t, dir.to.Reg, "agent")
		})
	}
}

func TestLabPunch(t *testing.T) {
	for _, tt := range []struct{ a, b natlab.Behaviour }{
		{natlab.PortRestrictedCone, natlab.PortRestrictedCone},
		{natlab.RestrictedCone, natlab.PortRestrictedCone},
		{natlab.SymmetricSequential, natlab.PortRestrictedCone},
		{natlab.UDPBlocked, natlab.PortRestrictedCone},
		{natlab.RestrictedCone, natlab.Symmetric},
		{natlab.SymmetricSequential, natlab.SymmetricSequential},
		{natlab.UDPBlocked, natlab.SymmetricSequential},
	} {
		t.Run(tt.a.String()+"/"+tt.b.String(), func(t *testing.T) { punchPair(t, tt.a, tt.b, nil) })
	}
}

// TestLabPunchSkewedClock: every lab namespace shares one wall clock, so
// one agent's local clock is set 7 s ahead; its NTP sync measures and
// removes the skew, and the punch still meets.
func TestLabPunchSkewedClock(t *testing.T) {
	const skew = 7 * time.Second
	punchPair(t, natlab.PortRestrictedCone, natlab.PortRestrictedCone, func(c *agent.Config) {
		c.Clock.Now = func() time.Time { return time.Now().Add(skew) }
	})
}
