//go:build !windows

// TestClientSendNotHeldByFrozenBroker freezes a broker with SIGSTOP, which
// Windows does not have; these tests run on Linux and macOS.

package signal

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/p2pd-go/p2pd/internal/metricstest"
	"github.com/p2pd-go/p2pd/internal/testenv"
	"github.com/p2pd-go/p2pd/pkg/identity"
)

// inbox records what a client's handler received.
type inbox struct {
	mu   sync.Mutex
	msgs []*Message
}

func (b *inbox) add(m *Message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
}

func (b *inbox) count(pipeID string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, m := range b.msgs {
		if pipeID == "" || m.PipeID == pipeID {
			n++
		}
	}
	return n
}

type peer struct {
	id      *identity.Identity
	client  *Client
	inbox   *inbox
	metrics *Metrics
	reg     *prometheus.Registry
}

func startPeer(t *testing.T, brokers []Broker, offsets []int) *peer {
	t.Helper()
	p := &peer{id: mustID(t), inbox: &inbox{}, metrics: NewMetrics(), reg: prometheus.NewRegistry()}
	if err := p.metrics.Register(p.reg); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientConfig{
		Identity:             p.id,
		Brokers:              brokers,
		Offsets:              offsets,
		Handler:              p.inbox.add,
		Metrics:              p.metrics,
		MaxReconnectInterval: time.Second,
		ConnectTimeout:       2 * time.Second,
		PublishTimeout:       2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.client = c
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "subscriptions on all own brokers", func() bool { return len(c.Subscribed()) == len(offsets) })
	return p
}

func send(t *testing.T, from, to *peer, offsets []int, pipeID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := from.client.Send(ctx, to.id.NodeID(), offsets, Body{Type: TypeEcho, PipeID: pipeID, TTL: 30, Payload: json.RawMessage(`"hi"`)})
	if err != nil {
		t.Fatalf("Send %s: %v", pipeID, err)
	}
}

func dropped(p *peer, reason string) float64 {
	return testutil.ToFloat64(p.metrics.Dropped.WithLabelValues(reason))
}

// Two brokers (one with a password), two clients: every message is
// published through both brokers and handed to the receiver exactly once.
func TestClientDeliversOnce(t *testing.T) {
	a := startMosquitto(t, "", "")
	b := startMosquitto(t, "agent", "s3cret")
	brokers := []Broker{{URL: a.url()}, {URL: b.url(), Username: "agent", Password: "s3cret"}}
	alice := startPeer(t, brokers, []int{0, 1})
	bob := startPeer(t, brokers, []int{1, 0})

	const n = 5
	for i := 0; i < n; i++ {
		send(t, alice, bob, []int{0, 1}, fmt.Sprintf("once-%d", i))
	}
	waitFor(t, "both copies of every message", func() bool {
		return bob.inbox.count("") == n && dropped(bob, "replay") == n
	})
	for i := 0; i < n; i++ {
		if c := bob.inbox.count(fmt.Sprintf("once-%d", i)); c != 1 {
			t.Errorf("message once-%d delivered %d times", i, c)
		}
	}
	for _, m := range bob.inbox.msgs {
		if m.FromID() != alice.id.NodeID() {
			t.Errorf("message from %s, want alice", m.FromID())
		}
	}
	waitFor(t, "both copies acknowledged", func() bool {
		return testutil.ToFloat64(alice.metrics.Publishes) == 2*n
	})
	metricstest.Lint(t, bob.reg, "agent")
}

// A frozen broker (SIGSTOP: connected but silent) does not hold a send up:
// the send returns once the other broker took the message, before the
// frozen broker's publish has even timed out, and the message arrives.
func TestClientSendNotHeldByFrozenBroker(t *testing.T) {
	a, b := startMosquitto(t, "", ""), startMosquitto(t, "", "")
	brokers := []Broker{{URL: a.url()}, {URL: b.url()}}
	alice := startPeer(t, brokers, []int{0, 1})
	bob := startPeer(t, brokers, []int{0, 1})
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer a.cmd.Process.Signal(syscall.SIGCONT)
	for i := range 3 {
		send(t, alice, bob, []int{0, 1}, fmt.Sprintf("frozen-%d", i))
		if e := testutil.ToFloat64(alice.metrics.PubErrors); e != 0 {
			t.Fatalf("send %d returned only after a publish failed (%v errors): it waited for the frozen broker", i, e)
		}
	}
	waitFor(t, "every message through the live broker", func() bool { return bob.inbox.count("") == 3 })
}

// When no broker takes a message, the error names every broker and its
// cause on one line.
func TestClientSendErrorNamesBrokers(t *testing.T) {
	a, b := startMosquitto(t, "", ""), startMosquitto(t, "", "")
	brokers := []Broker{{URL: a.url()}, {URL: b.url()}}
	alice := startPeer(t, brokers, []int{0, 1})
	bob := startPeer(t, brokers, []int{0, 1})
	a.stop()
	b.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := alice.client.Send(ctx, bob.id.NodeID(), []int{0, 1}, Body{Type: TypeEcho, PipeID: "dead", TTL: 30})
	if err == nil {
		t.Fatal("send with both brokers down succeeded")
	}
	msg := err.Error()
	for _, u := range []string{a.url(), b.url()} {
		if !strings.Contains(msg, u) {
			t.Errorf("error %q does not name broker %s", msg, u)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans lines: %q", msg)
	}
}

// A peer listening on a broker we are not subscribed to is reached through a
// publish-only connection.
func TestClientSendsToForeignBroker(t *testing.T) {
	a, b := startMosquitto(t, "", ""), startMosquitto(t, "", "")
	brokers := []Broker{{URL: a.url()}, {URL: b.url()}}
	alice := startPeer(t, brokers, []int{0})
	bob := startPeer(t, brokers, []int{1})
	send(t, alice, bob, []int{1}, "foreign")
	waitFor(t, "the message", func() bool { return bob.inbox.count("foreign") == 1 })
}

// Killing one broker loses nothing: the other carries the messages. When it
// comes back the clients reconnect and resubscribe, and carry messages after
// the other broker dies in turn.
func TestClientSurvivesBrokerDeath(t *testing.T) {
	a, b := startMosquitto(t, "", ""), startMosquitto(t, "", "")
	brokers := []Broker{{URL: a.url()}, {URL: b.url()}}
	alice := startPeer(t, brokers, []int{0, 1})
	bob := startPeer(t, brokers, []int{0, 1})

	send(t, alice, bob, []int{0, 1}, "before")
	waitFor(t, "first message", func() bool { return bob.inbox.count("before") == 1 })

	a.stop()
	waitFor(t, "clients to notice broker 0 died", func() bool {
		return len(alice.client.Subscribed()) == 1 && len(bob.client.Subscribed()) == 1
	})
	for i := 0; i < 3; i++ {
		send(t, alice, bob, []int{0, 1}, fmt.Sprintf("during-%d", i))
	}
	waitFor(t, "messages through broker 1", func() bool { return bob.inbox.count("") == 4 })

	a.start()
	waitFor(t, "resubscription on broker 0", func() bool {
		return len(alice.client.Subscribed()) == 2 && len(bob.client.Subscribed()) == 2
	})
	b.stop()
	waitFor(t, "clients to notice broker 1 died", func() bool {
		return len(alice.client.Subscribed()) == 1 && len(bob.client.Subscribed()) == 1
	})
	send(t, alice, bob, []int{1, 0}, "after")
	waitFor(t, "message through the restarted broker", func() bool { return bob.inbox.count("after") == 1 })
	for _, id := range []string{"before", "during-0", "during-1", "during-2", "after"} {
		if c := bob.inbox.count(id); c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
}

// Envelopes published by a foreign client (mosquitto_pub) that are garbage,
// forged, expired or replayed are dropped and counted; the one good message
// is delivered once.
func TestClientDropsBadEnvelopes(t *testing.T) {
	pubBin := testenv.RequireTools(t, "mosquitto_pub")[0]
	a := startMosquitto(t, "", "")
	brokers := []Broker{{URL: a.url()}}
	bob := startPeer(t, brokers, []int{0})
	mallory := mustID(t)

	now := time.Now().UnixMilli()
	seal := func(b Body) []byte {
		env, err := Seal(mallory, bob.id.Public, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	good := seal(Body{Type: TypeCon, PipeID: "good", TTL: 30, TS: now})
	forged := append([]byte(nil), good...)
	forged[len(forged)/2] ^= 0x40
	dir := t.TempDir()
	publish := func(name string, env []byte) {
		t.Helper()
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, env, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(pubBin, "-h", "127.0.0.1", "-p", fmt.Sprint(a.port), "-q", "1",
			"-t", Topic(bob.id.NodeID()), "-f", f).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub %s: %v: %s", name, err, out)
		}
	}
	publish("garbage", []byte("hello, not an envelope at all, just some text to get past the length check"))
	publish("forged", forged)
	publish("expired", seal(Body{Type: TypeCon, PipeID: "old", TTL: 5, TS: now - 60_000}))
	publish("good", good)
	publish("replay", good)

	waitFor(t, "all drops counted", func() bool {
		return dropped(bob, "version")+dropped(bob, "short") == 1 && dropped(bob, "forged") == 1 &&
			dropped(bob, "expired") == 1 && dropped(bob, "replay") == 1 && bob.inbox.count("") == 1
	})
	if bob.inbox.count("good") != 1 {
		t.Fatalf("good message delivered %d times", bob.inbox.count("good"))
	}
}

func TestNewClientErrors(t *testing.T) {
	id := mustID(t)
	ok := []Broker{{URL: "tcp://127.0.0.1:1883"}}
	tests := []struct {
		name string
		cfg  ClientConfig
	}{
		{"no identity", ClientConfig{Brokers: ok, Offsets: []int{0}}},
		{"no offsets", ClientConfig{Identity: id, Brokers: ok}},
		{"offset out of list", ClientConfig{Identity: id, Brokers: ok, Offsets: []int{1}}},
		{"four offsets", ClientConfig{Identity: id, Brokers: append(ok, ok[0], ok[0], ok[0]), Offsets: []int{0, 1, 2, 3}}},
		{"repeated offset", ClientConfig{Identity: id, Brokers: append(ok, ok[0]), Offsets: []int{0, 0}}},
		{"bad scheme", ClientConfig{Identity: id, Brokers: []Broker{{URL: "http://x:1"}}, Offsets: []int{0}}},
		{"no port", ClientConfig{Identity: id, Brokers: []Broker{{URL: "tcp://x"}}, Offsets: []int{0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewClient(tc.cfg); err == nil {
				t.Fatal("NewClient accepted a bad config")
			}
		})
	}
}

// A broker that is down when the agent starts is retried in the background;
// Start returns once it is up and subscribed.
func TestClientStartRetries(t *testing.T) {
	a := newMosquitto(t, "", "")
	brokers := []Broker{{URL: a.url()}}
	id := mustID(t)
	got := &inbox{}
	c, err := NewClient(ClientConfig{Identity: id, Brokers: brokers, Offsets: []int{0}, Handler: got.add, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err = c.Start(ctx)
	cancel()
	if err == nil {
		t.Fatal("Start succeeded with the only broker down")
	}
	a.start()
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start after the broker came up: %v", err)
	}
	alice := startPeer(t, brokers, []int{0})
	send(t, alice, &peer{id: id}, []int{0}, "late")
	waitFor(t, "the message", func() bool { return got.count("late") == 1 })
}
