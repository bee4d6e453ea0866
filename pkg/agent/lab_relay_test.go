package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/node"
)

// Two peers that can reach each other neither directly nor by reverse
// connect (both symmetric; one on a UDP-blocked network, whose allocation
// goes over TCP) connect through turnd, relay to relay.
func TestRelayWhereNothingElseWorks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		a, b   natlab.Behaviour
		aTrans string
	}{
		{"symmetric to symmetric", natlab.Symmetric, natlab.Symmetric, "udp"},
		{"udp-blocked to symmetric", natlab.UDPBlocked, natlab.Symmetric, "tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := natlab.New(t)
			s := agenttest.NewStack(t, lab, agenttest.MQTTD)
			s.StartTURN(t)
			a := agenttest.StartAgent(t, lab.AddRouter("ra", tc.a).AddHost("a"), s)
			b := agenttest.StartAgent(t, lab.AddRouter("rb", tc.b).AddHost("b"), s)
			if got := a.Relay().Transport(); got != tc.aTrans {
				t.Errorf("a's allocation over %q, want %q", got, tc.aTrans)
			}
			connect(t, a, b, node.KindRelay)
		})
	}
}

// turnd restarted under a relayed pipe: the pipe reports that it broke,
// the agents re-allocate by themselves, and a new connect gets through.
func TestRelayTurndRestart(t *testing.T) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	s.StartTURN(t)
	a := agenttest.StartAgent(t, lab.AddRouter("ra", natlab.Symmetric).AddHost("a"), s)
	b := agenttest.StartAgent(t, lab.AddRouter("rb", natlab.Symmetric).AddHost("b"), s)
	p := connect(t, a, b, node.KindRelay)
	oldA, _ := a.Relay().RelayAddr()
	oldB, _ := b.Relay().RelayAddr()
	s.RestartTURN(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("the relayed pipe did not notice that turnd went away")
	}
	err := p.Send(ctx, []byte("ECHO after"))
	if err == nil {
		t.Fatal("send on the broken relayed pipe succeeded")
	}
	t.Logf("send on the broken pipe: %v; pipe error: %v", err, p.Err())
	if !strings.Contains(strings.ToLower(fmt.Sprint(p.Err())), "turn") && !strings.Contains(strings.ToLower(err.Error()), "closed") {
		t.Errorf("the broken pipe's errors (%v / %v) do not say what happened", p.Err(), err)
	}
	for _, ag := range []struct {
		a   *agenttest.Agent
		old netip.AddrPort
	}{{a, oldA}, {b, oldB}} {
		for {
			if ra, ok := ag.a.Relay().RelayAddr(); ok && ra != ag.old {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatal("no new allocation after turnd came back")
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	connect(t, a, b, node.KindRelay)
}

// 1 MiB through a relayed pipe arrives intact and in order while both
// sites' links lose 2% of their packets (10 ms each way).
func TestRelayedPipeUnderLoss(t *testing.T) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	s.StartTURN(t)
	lossy := natlab.Link{Delay: 10 * time.Millisecond, Loss: 2}
	a := agenttest.StartAgent(t, lab.AddRouter("ra", natlab.Symmetric, lossy).AddHost("a"), s)
	b := agenttest.StartAgent(t, lab.AddRouter("rb", natlab.PortRestrictedCone, lossy).AddHost("b"), s)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, in := relayPipes(ctx, t, a, b)
	const chunk, n = 16 << 10, 64 // 1 MiB
	want := make([]byte, chunk*n)
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := range n {
			if err := p.Send(ctx, want[i*chunk:(i+1)*chunk]); err != nil {
				t.Errorf("send chunk %d: %v", i, err)
				return
			}
		}
	}()
	var got []byte
	for i := range n {
		m, err := in.Recv(ctx, agent.AllMessages, time.Minute)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		got = append(got, m.Data...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("1 MiB through the relay arrived changed or out of order")
	}
}

// relayPipes connects a to b with the relay strategy only and returns both
// ends (b's as it arrived inbound); both close when the test ends.
func relayPipes(ctx context.Context, t *testing.T, a, b *agenttest.Agent) (out, in *agent.Pipe) {
	t.Helper()
	out, rep, err := a.ConnectWith(ctx, b.Addr(t), node.Options{Strategies: []string{node.KindRelay}})
	if err != nil {
		t.Fatalf("relay connect: %v (%+v)", err, rep)
	}
	t.Cleanup(func() { out.Close() })
	select {
	case in = <-b.Inbound:
		t.Cleanup(func() { in.Close() })
	case <-ctx.Done():
		t.Fatal("no inbound relayed pipe")
	}
	return out, in
}
