package agent_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testenv"
	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/signal"
)

// Scenario 5: forged, replayed and expired signalling messages are dropped
// and counted, and trigger nothing.
func TestSignallingAttacks(t *testing.T) {
	s, b, attacker := attackTarget(t)
	seal := func(body signal.Body) []byte {
		env, err := signal.Seal(attacker, mustKey(t, b.ID()), body, nil)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	publish := func(payload []byte) { publishRaw(t, s, b.ID(), payload) }
	valid := seal(signal.Body{Type: signal.TypeEcho, PipeID: "replayed-pipe", TTL: 30})
	forged := seal(signal.Body{Type: signal.TypeCon, PipeID: "forged-pipe", TTL: 30})
	forged[len(forged)-1] ^= 0xff // tampered in transit
	expired := seal(signal.Body{Type: signal.TypeCon, PipeID: "old-pipe", TTL: 5, TS: time.Now().Add(-10 * time.Minute).UnixMilli()})

	publish(valid)
	publish(valid) // the replay
	publish(forged)
	publish(expired)

	dropped := func(reason string) float64 {
		return counterValue(t, b, "agent_signal_dropped_total", "reason", reason)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (dropped("replay") < 1 || dropped("forged") < 1 || dropped("expired") < 1) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, r := range []string{"replay", "forged", "expired"} {
		if got := dropped(r); got != 1 {
			t.Errorf("agent_signal_dropped_total{reason=%q} = %v, want 1", r, got)
		}
	}
}

// attackTarget starts a stack and an agent behind a port-restricted NAT,
// and makes an attacker's key; publishRaw needs mosquitto_pub.
func attackTarget(t *testing.T) (*agenttest.Stack, *agenttest.Agent, *identity.Identity) {
	t.Helper()
	testenv.RequireTools(t, "mosquitto_pub")
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	b := agenttest.StartAgent(t, lab.AddRouter("home", natlab.PortRestrictedCone).AddHost("b"), s)
	attacker, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s, b, attacker
}

// publishRaw publishes an envelope to a node's topic on the stack's first
// broker with Debian's mosquitto_pub: a foreign client, bypassing our own.
func publishRaw(t *testing.T, s *agenttest.Stack, nodeID string, payload []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(f, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(strings.TrimPrefix(s.Brokers[0].URL, "tcp://"), ":")
	out, err := s.Srv.Command(context.Background(), "mosquitto_pub", "-h", host, "-p", port, "-q", "1",
		"-t", signal.Topic(nodeID), "-f", f).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
}

func mustKey(t *testing.T, nodeID string) [identity.KeySize]byte {
	k, err := identity.ParseNodeID(nodeID)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// counterValue reads one labelled counter from an agent's registry.
func counterValue(t *testing.T, la *agenttest.Agent, name, label, value string) float64 {
	t.Helper()
	mfs, err := la.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// Scenario 6: a peer that does not hold the claimed node key is refused.
func TestImpostorRefused(t *testing.T) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	a := agenttest.StartAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("a"), s)
	b := agenttest.StartAgent(t, lab.AddRouter("isp2", natlab.Open).AddHost("b"), s)
	// An address that points at b's listener but names another node.
	other, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := b.Address()
	if err != nil {
		t.Fatal(err)
	}
	addr.NodeID = identity.NodeID(other.Public)
	_, rep, err := a.Connect(context.Background(), addr.String(), "direct")
	if err == nil || !strings.Contains(err.Error(), "does not hold the key of node "+addr.NodeID) {
		t.Fatalf("got %v (report %+v), want a refusal naming the key", err, rep)
	}
	select {
	case p := <-b.Inbound:
		t.Fatalf("b handed an unauthenticated pipe to the application: %+v", p)
	case <-time.After(200 * time.Millisecond):
	}
}
