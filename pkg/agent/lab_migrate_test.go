package agent_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/metricstest"
	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/clock"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/pipe"
)

// migrations reads agent_pipe_migrations_total{from,to,result}.
func migrations(t *testing.T, la *agenttest.Agent, from, to, result string) float64 {
	t.Helper()
	mfs, err := la.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "agent_pipe_migrations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["from"] == from && l["to"] == to && l["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasPhase(r node.Report, name, result string) bool {
	for _, ph := range r.Phases {
		if ph.Strategy == name && ph.Result == result {
			return true
		}
	}
	return false
}

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestLabRelayMovesToPunchAndBack: a pipe the relay won (the connect runs
// only the relay) between two port-restricted cones moves to a punched TCP
// path while 10 MiB stream through it; then the punched path is cut (its
// 4-tuple dropped in a's namespace, silently; or its socket destroyed with
// ss -K, which resets it), the pipe falls back to the relay it kept as
// standby, and the 10 MiB arrive intact and in order. The pipe objects stay
// the same; reports and metrics on both sides show the moves.
func TestLabRelayMovesToPunchAndBack(t *testing.T) {
	for _, how := range []string{"silent drop (nftables)", "reset (ss -K)"} {
		t.Run(how, func(t *testing.T) { moveAndCut(t, strings.HasPrefix(how, "reset")) })
	}
}

func moveAndCut(t *testing.T, reset bool) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	s.StartTURN(t)
	link := natlab.Link{Delay: 10 * time.Millisecond}
	tune := func(c *agent.Config) {
		c.Migrate.Heartbeat = 250 * time.Millisecond
		c.Migrate.IdleTimeout = 3 * time.Second
		c.Migrate.Retry = time.Second
	}
	ha := lab.AddRouter("ra", natlab.PortRestrictedCone, link).AddHost("a")
	a := agenttest.StartAgentWith(t, ha, s, tune)
	b := agenttest.StartAgentWith(t, lab.AddRouter("rb", natlab.PortRestrictedCone, link).AddHost("b"), s, tune)
	waitClock(t, a, clock.SourceNTP)
	waitClock(t, b, clock.SourceNTP)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, in := relayPipes(ctx, t, a, b)
	if !p.Resumable() || !in.Resumable() {
		t.Fatalf("relayed pipe not resumable (ours %v, theirs %v)", p.Resumable(), in.Resumable())
	}

	const chunk, n = 16 << 10, 640 // 10 MiB
	want := make([]byte, chunk*n)
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var h hash.Hash = sha256.New()
	got := 0
	done := make(chan struct{})
	// A handler sees every message, in order, on the pipe's reader: no
	// queue can drop one.
	if err := in.SubscribeFunc(pipe.Sub{Msg: "^"}, func(m pipe.Message) {
		mu.Lock()
		defer mu.Unlock()
		h.Write(m.Data)
		got += len(m.Data)
		if got == len(want) {
			close(done)
		}
	}); err != nil {
		t.Fatal(err)
	}
	received := func() int {
		mu.Lock()
		defer mu.Unlock()
		return got
	}

	upgraded := make(chan struct{})
	cut := make(chan struct{})
	sendErr := make(chan error, 1)
	go func() {
		for i := range n {
			switch i {
			case n / 8:
				select { // stream on over the relay until the move
				case <-upgraded:
				case <-ctx.Done():
				}
			case n / 2:
				close(cut)
			}
			if err := p.Send(ctx, want[i*chunk:(i+1)*chunk]); err != nil {
				sendErr <- fmt.Errorf("chunk %d: %w", i, err)
				return
			}
		}
		sendErr <- nil
	}()

	waitUntil(t, ctx, "the move to the punched path", func() bool {
		return p.Path() == node.KindPunch && in.Path() == node.KindPunch
	})
	close(upgraded)
	t.Logf("moved to the punched path after %d bytes: %+v", received(), p.Paths())
	var local, remote netip.AddrPort
	for _, pi := range p.Paths() {
		if pi.Label == node.KindPunch {
			local, _ = netip.ParseAddrPort(pi.Local.String())
			remote, _ = netip.ParseAddrPort(pi.Remote.String())
		}
	}
	if !local.IsValid() || !remote.IsValid() {
		t.Fatalf("no punched path among %+v", p.Paths())
	}
	select {
	case <-cut:
	case <-ctx.Done():
		t.Fatal("the stream stalled before the cut")
	}
	before := received()
	if reset {
		// Destroy the punched socket in a's namespace: the kernel resets
		// the connection, both ends see an error at once.
		cmd := ha.Command(ctx, "ss", "-K", "-t", "src", local.String(), "dst", remote.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ss -K: %v: %s", err, out)
		}
	} else {
		// Drop the punched 4-tuple both ways in a's namespace: no RST, no
		// FIN, just silence, like a NAT that lost its mapping.
		rules := fmt.Sprintf(`table inet migcut {
	chain out { type filter hook output priority -10; ip saddr %[1]s tcp sport %[2]d ip daddr %[3]s tcp dport %[4]d drop; }
	chain in { type filter hook input priority -10; ip saddr %[3]s tcp sport %[4]d ip daddr %[1]s tcp dport %[2]d drop; }
}
`, local.Addr().Unmap(), local.Port(), remote.Addr().Unmap(), remote.Port())
		cmd := ha.Command(ctx, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft: %v: %s", err, out)
		}
	}
	t.Logf("cut %s <-> %s after %d bytes", local, remote, before)

	select {
	case <-done:
	case err := <-sendErr:
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatalf("only %d of %d bytes arrived", received(), len(want))
		}
	case <-ctx.Done():
		t.Fatalf("only %d of %d bytes arrived", received(), len(want))
	}
	mu.Lock()
	sum := h.Sum(nil)
	mu.Unlock()
	if wantSum := sha256.Sum256(want); string(sum) != string(wantSum[:]) {
		t.Fatal("10 MiB arrived changed, duplicated or out of order")
	}
	waitUntil(t, ctx, "both ends back on the relay", func() bool {
		return p.Path() == node.KindRelay && in.Path() == node.KindRelay
	})
	if p.Kind != node.KindRelay || p.Err() != nil || in.Err() != nil {
		t.Errorf("pipe kind %q, errors %v / %v", p.Kind, p.Err(), in.Err())
	}
	for _, side := range []struct {
		name string
		ag   *agenttest.Agent
		p    *agent.Pipe
	}{{"connecting side", a, p}, {"answering side", b, in}} {
		r := side.p.FullReport()
		t.Logf("%s report: %+v", side.name, r.Phases)
		if !hasPhase(r, "upgrade punch", node.ResultOK) || !hasPhase(r, "fallback relay", node.ResultOK) {
			t.Errorf("%s report lacks the upgrade or the fall back: %+v", side.name, r.Phases)
		}
		if got := migrations(t, side.ag, node.KindRelay, node.KindPunch, "ok"); got != 1 {
			t.Errorf("%s: agent_pipe_migrations_total{relay->punch,ok} = %v, want 1", side.name, got)
		}
		if got := migrations(t, side.ag, node.KindPunch, node.KindRelay, "ok"); got != 1 {
			t.Errorf("%s: agent_pipe_migrations_total{punch->relay,ok} = %v, want 1", side.name, got)
		}
		metricstest.Lint(t, side.ag.Reg, "agent")
	}
	// The pipe still works both ways over the relay.
	echo(t, p)
	echo(t, in)
}

// TestLabRelayNoMigration: an agent with migration off opens plain relayed
// pipes (as an agent without migration does: no resume in the Hello), and
// the peer, which migrates, takes them as plain pipes.
func TestLabRelayNoMigration(t *testing.T) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	s.StartTURN(t)
	a := agenttest.StartAgentWith(t, lab.AddRouter("ra", natlab.Symmetric).AddHost("a"), s, func(c *agent.Config) { c.Migrate.Off = true })
	b := agenttest.StartAgent(t, lab.AddRouter("rb", natlab.Symmetric).AddHost("b"), s)
	p := connect(t, a, b, node.KindRelay)
	if p.Resumable() {
		t.Error("a pipe from an agent with migration off is resumable")
	}
	if got := migrations(t, b, node.KindRelay, node.KindPunch, "ok"); got != 0 {
		t.Errorf("migrations on the peer: %v", got)
	}
}
