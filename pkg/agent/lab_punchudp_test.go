package agent_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/metricstest"
	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/clock"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/node"
)

// counterOf is a counter's value by all its labels (0 if absent).
func counterOf(t *testing.T, la *agenttest.Agent, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := la.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// punchTransport is the transport of the report's punch phase.
func punchTransport(rep node.Report) string {
	for _, ph := range rep.Phases {
		if ph.Result == node.ResultOK {
			return ph.Transport
		}
	}
	return ""
}

// udpPunchLab starts two agents behind ab and bb (40 ms apart) with the
// given punch transports, once their clocks have synced.
func udpPunchLab(t *testing.T, ab, bb natlab.Behaviour, transports []string) (*agenttest.Agent, *agenttest.Agent, *natlab.Router, *natlab.Router) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	link := natlab.Link{Delay: 10 * time.Millisecond}
	tune := func(c *agent.Config) { c.PunchTransports = transports }
	ra, rb := lab.AddRouter("ra", ab, link), lab.AddRouter("rb", bb, link)
	a := agenttest.StartAgentWith(t, ra.AddHost("a"), s, tune)
	b := agenttest.StartAgentWith(t, rb.AddHost("b"), s, tune)
	waitClock(t, a, clock.SourceNTP)
	waitClock(t, b, clock.SourceNTP)
	return a, b, ra, rb
}

// dropTCPBetween makes router r drop every TCP segment it forwards to or
// from peer's WAN address (a firewall that lets only UDP through between
// the two sites); signalling and STUN go to other hosts and pass.
func dropTCPBetween(t *testing.T, r, peer *natlab.Router) {
	t.Helper()
	w := peer.WANAddr().String()
	rules := "table ip p2pdtest {\n chain tcpdrop {\n  type filter hook forward priority 0; policy accept;\n" +
		"  ip daddr " + w + " meta l4proto tcp drop\n  ip saddr " + w + " meta l4proto tcp drop\n }\n}\n"
	cmd := r.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v: %s", r.Name(), err, out)
	}
}

// TestLabPunchUDP: with TCP punching off, agents behind NATs that rule out
// direct and reverse connect by UDP hole punching (a QUIC stream from the
// punch socket, Noise on it), ECHO both ways, each way twice, and both
// sides report the UDP transport.
func TestLabPunchUDP(t *testing.T) {
	for _, tt := range []struct{ a, b natlab.Behaviour }{
		{natlab.PortRestrictedCone, natlab.PortRestrictedCone},
		{natlab.SymmetricSequential, natlab.PortRestrictedCone},
		{natlab.PortRestrictedCone, natlab.SymmetricSequential},
		{natlab.SymmetricSequential, natlab.SymmetricSequential},
		{natlab.RestrictedCone, natlab.Symmetric},
	} {
		t.Run(tt.a.String()+"/"+tt.b.String(), func(t *testing.T) {
			a, b, _, _ := udpPunchLab(t, tt.a, tt.b, []string{agent.PunchUDP})
			for _, dir := range []struct {
				name     string
				from, to *agenttest.Agent
			}{{"a to b", a, b}, {"b to a", b, a}, {"a to b again", a, b}} {
				t.Run(dir.name, func(t *testing.T) {
					okFrom := counterOf(t, dir.from, "agent_punch_total", map[string]string{"transport": "udp", "result": "ok"})
					p := connect(t, dir.from, dir.to, node.KindPunch)
					if got := punchTransport(p.Report); got != "udp" {
						t.Errorf("punch phase transport %q, want udp (%+v)", got, p.Report.Phases)
					}
					noSecondPipe(t, dir.to)
					if got := counterOf(t, dir.from, "agent_punch_total", map[string]string{"transport": "udp", "result": "ok"}); got != okFrom+1 {
						t.Errorf("agent_punch_total{udp,ok} %v, want %v", got, okFrom+1)
					}
					if got := counterOf(t, dir.from, "agent_punch_total", map[string]string{"transport": "tcp", "result": "skipped"}); got < 1 {
						t.Errorf("agent_punch_total{tcp,skipped} = %v with TCP off", got)
					}
					metricstest.Lint(t, dir.from.Reg, "agent")
				})
			}
		})
	}
}

// TestLabPunchRace: both transports punch at once between port-restricted
// cones, each way; one pipe survives, the winning leg is counted ok on
// both sides and the other lost (it was cancelled and closed), and the
// report names the winner's transport. With TCP dropped between the two
// routers UDP must be the winner.
func TestLabPunchRace(t *testing.T) {
	for _, tt := range []struct {
		name    string
		dropTCP bool
		want    string // the winning transport; "" either
	}{{"both open", false, ""}, {"tcp dropped between the sites", true, "udp"}} {
		t.Run(tt.name, func(t *testing.T) {
			a, b, ra, rb := udpPunchLab(t, natlab.PortRestrictedCone, natlab.PortRestrictedCone, nil)
			if tt.dropTCP {
				dropTCPBetween(t, ra, rb)
			}
			for _, dir := range []struct {
				name     string
				from, to *agenttest.Agent
			}{{"a to b", a, b}, {"b to a", b, a}} {
				t.Run(dir.name, func(t *testing.T) { raceOnce(t, dir.from, dir.to, tt.want) })
			}
		})
	}
}

func raceOnce(t *testing.T, from, to *agenttest.Agent, want string) {
	count := func(la *agenttest.Agent) map[string]float64 {
		m := map[string]float64{}
		for _, tr := range []string{"tcp", "udp"} {
			for _, r := range []string{"ok", "lost", "failed", "skipped"} {
				m[tr+" "+r] = counterOf(t, la, "agent_punch_total", map[string]string{"transport": tr, "result": r})
			}
		}
		return m
	}
	before := map[*agenttest.Agent]map[string]float64{from: count(from), to: count(to)}
	p := connect(t, from, to, node.KindPunch)
	won := punchTransport(p.Report)
	if won != "tcp" && won != "udp" || want != "" && won != want {
		t.Fatalf("punch phase transport %q, want %q (%+v)", won, want, p.Report.Phases)
	}
	lost := map[string]string{"tcp": "udp", "udp": "tcp"}[won]
	t.Logf("%s won", won)
	noSecondPipe(t, to)
	for _, la := range []*agenttest.Agent{from, to} {
		d := count(la)
		if got := d[won+" ok"] - before[la][won+" ok"]; got != 1 {
			t.Errorf("agent_punch_total{%s,ok} went up by %v, want 1", won, got)
		}
		if got := d[lost+" lost"] - before[la][lost+" lost"]; got != 1 {
			t.Errorf("agent_punch_total{%s,lost} went up by %v, want 1", lost, got)
		}
	}
}

// TestLabPunchUDPLateSide: between two sequential symmetric NATs, one side
// sends its first UDP punch 200 ms after the meeting time (five times the
// one-way delay). The other side's datagrams reach the late side's NAT
// first and its flows are mapped around them, so that punch cannot meet:
// it must give up once nothing is heard and the connect must punch again
// with fresh ports, and succeed, whichever side was late.
func TestLabPunchUDPLateSide(t *testing.T) {
	for _, late := range []string{"initiator", "responder"} {
		t.Run(late+" late", func(t *testing.T) {
			a, b, _, _ := udpPunchLab(t, natlab.SymmetricSequential, natlab.SymmetricSequential, nil)
			var first atomic.Bool
			first.Store(true)
			lateSide := b
			if late == "initiator" {
				lateSide = a
			}
			agent.SetUDPPunchLate(lateSide.Agent, func() time.Duration {
				if first.Swap(false) {
					return 200 * time.Millisecond
				}
				return 0
			})
			p := connect(t, a, b, node.KindPunch)
			if got := punchTransport(p.Report); got != "udp" {
				t.Errorf("punch phase transport %q, want udp (%+v)", got, p.Report.Phases)
			}
			if got := counterOf(t, a, "agent_punch_retries_total", nil); got != 1 {
				t.Errorf("agent_punch_retries_total = %v, want 1", got)
			}
			if got := counterOf(t, a, "agent_punch_total", map[string]string{"transport": "udp", "result": "failed"}); got != 1 {
				t.Errorf("agent_punch_total{udp,failed} = %v, want 1 (the first punch)", got)
			}
			noSecondPipe(t, b)
			metricstest.Lint(t, a.Reg, "agent")
		})
	}
}
