package signal

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/nacl/box"

	"github.com/p2pd-go/p2pd/internal/metricstest"
	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
)

func mustID(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func addrOf(id *identity.Identity) string {
	return peeraddr.Address{Signal: []int{0, 1}, NodeID: id.NodeID(), IPv4: []peeraddr.Block{{
		Ext: netip.MustParseAddr("192.0.2.1"), NIC: netip.MustParseAddr("10.0.0.2"), Port: 10001, NATType: 5, DeltaType: 6,
	}}}.String()
}

// fixedClock is an injectable clock for tests.
type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }

func TestSealOpen(t *testing.T) {
	alice, bob := mustID(t), mustID(t)
	body := Body{Type: TypePunch, PipeID: "p1", TTL: 30, SrcAddr: addrOf(alice), Payload: json.RawMessage(`{"ntp":"1.5"}`)}
	env, err := Seal(alice, bob.Public, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewOpener(bob, OpenerConfig{}).Open(env)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if m.FromID() != alice.NodeID() || m.Type != TypePunch || m.PipeID != "p1" || m.SrcAddr != body.SrcAddr || string(m.Payload) != `{"ntp":"1.5"}` {
		t.Fatalf("opened %+v", m)
	}
}

func TestSealRejects(t *testing.T) {
	alice, bob := mustID(t), mustID(t)
	tests := []struct {
		name string
		body Body
	}{
		{"unknown type", Body{Type: "HELLO", PipeID: "p", TTL: 1}},
		{"no pipe id", Body{Type: TypeCon, TTL: 1}},
		{"long pipe id", Body{Type: TypeCon, PipeID: string(make([]byte, MaxPipeIDLen+1)), TTL: 1}},
		{"no ttl", Body{Type: TypeCon, PipeID: "p"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Seal(alice, bob.Public, tc.body, nil); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Seal = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestOpenDrops(t *testing.T) {
	alice, bob, eve := mustID(t), mustID(t), mustID(t)
	clock := &fixedClock{t: time.Unix(1_800_000_000, 0)}
	now := clock.t.UnixMilli()
	seal := func(from *identity.Identity, b Body) []byte {
		t.Helper()
		if b.TS == 0 {
			b.TS = now
		}
		env, err := Seal(from, bob.Public, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	good := seal(alice, Body{Type: TypeCon, PipeID: "ok", TTL: 10})
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-1] ^= 1
	spoofed := append([]byte(nil), good...)
	copy(spoofed[1:], eve.Public[:]) // claims to be from eve
	toEve, _ := Seal(alice, eve.Public, Body{Type: TypeCon, PipeID: "x", TTL: 10, TS: now}, nil)
	badVersion := append([]byte(nil), good...)
	badVersion[0] = 2

	tests := []struct {
		name string
		env  []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"header only", good[:headerSize], ErrShort},
		{"version", badVersion, ErrVersion},
		{"bit flipped", flipped, ErrForged},
		{"sender key swapped", spoofed, ErrForged},
		{"sealed to someone else", toEve, ErrForged},
		{"expired", seal(alice, Body{Type: TypeCon, PipeID: "old", TTL: 10, TS: now - 11_000}), ErrExpired},
		{"ttl capped", seal(alice, Body{Type: TypeCon, PipeID: "cap", TTL: 1 << 40, TS: now - int64(DefaultMaxTTL/time.Millisecond) - 1}), ErrExpired},
		{"future", seal(alice, Body{Type: TypeCon, PipeID: "new", TTL: 10, TS: now + int64(DefaultMaxSkew/time.Millisecond) + 1000}), ErrFuture},
		{"src_addr of another node", seal(alice, Body{Type: TypeCon, PipeID: "s", TTL: 10, SrcAddr: addrOf(eve)}), ErrSender},
		{"src_addr garbage", seal(alice, Body{Type: TypeCon, PipeID: "g", TTL: 10, SrcAddr: "nope"}), ErrMalformed},
		{"first copy", good, nil},
		{"second copy (other broker)", good, ErrReplay},
		{"same pipe and type, new nonce", seal(alice, Body{Type: TypeCon, PipeID: "ok", TTL: 10}), ErrReplay},
		{"same pipe, other type", seal(alice, Body{Type: TypePunch, PipeID: "ok", TTL: 10}), nil},
		{"same pipe and type, other sender", seal(eve, Body{Type: TypeCon, PipeID: "ok", TTL: 10}), nil},
	}
	metrics := NewMetrics()
	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg); err != nil {
		t.Fatal(err)
	}
	op := NewOpener(bob, OpenerConfig{Now: clock.Now, Metrics: metrics})
	want := map[string]float64{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := op.Open(tc.env)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Open = %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
			want[Reason(tc.want)]++
		})
	}
	for reason, n := range want {
		if got := testutil.ToFloat64(metrics.Dropped.WithLabelValues(reason)); got != n {
			t.Errorf("agent_signal_dropped_total{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	metricstest.Lint(t, reg, "agent")
}

// The replay cache forgets old entries to stay bounded, but never in a way
// that lets a replay through.
func TestReplayCacheBounded(t *testing.T) {
	alice, bob := mustID(t), mustID(t)
	clock := &fixedClock{t: time.Unix(1_800_000_000, 0)}
	op := NewOpener(bob, OpenerConfig{Now: clock.Now, ReplaySize: 8})
	var envs [][]byte
	for i := 0; i < 20; i++ {
		clock.t = clock.t.Add(time.Millisecond)
		env, err := Seal(alice, bob.Public, Body{Type: TypeEcho, PipeID: string(rune('a' + i)), TTL: 60, TS: clock.t.UnixMilli()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := op.Open(env); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		envs = append(envs, env)
	}
	if n := len(op.seen.entries); n > 8 {
		t.Fatalf("cache holds %d entries, bound 8", n)
	}
	for i, env := range envs {
		if _, err := op.Open(env); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay of message %d: %v, want ErrReplay", i, err)
		}
	}
	// Once everything expired the cache empties itself.
	clock.t = clock.t.Add(2 * time.Minute)
	env, _ := Seal(alice, bob.Public, Body{Type: TypeEcho, PipeID: "late", TTL: 60, TS: clock.t.UnixMilli()}, nil)
	if _, err := op.Open(env); err != nil {
		t.Fatal(err)
	}
	if n := len(op.seen.entries); n != 2 {
		t.Fatalf("cache holds %d entries after expiry, want 2", n)
	}
}

func FuzzOpen(f *testing.F) {
	alice, _ := identity.FromPrivate([identity.KeySize]byte{1})
	bob, _ := identity.FromPrivate([identity.KeySize]byte{2})
	now := time.Unix(1_800_000_000, 0)
	for _, b := range []Body{
		{Type: TypeCon, PipeID: "p", TTL: 10, TS: now.UnixMilli()},
		{Type: TypeTURN, PipeID: "q", TTL: 10, TS: now.UnixMilli(), Payload: json.RawMessage(`{"a":[1,2]}`)},
	} {
		env, err := Seal(alice, bob.Public, b, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(env)
	}
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, env []byte) {
		op := NewOpener(bob, OpenerConfig{Now: func() time.Time { return now }})
		m, err := op.Open(env)
		if err != nil {
			if Reason(err) == "other" {
				t.Fatalf("error without a drop reason: %v", err)
			}
			return
		}
		if !m.Type.Valid() || m.PipeID == "" {
			t.Fatalf("accepted an invalid body %+v", m.Body)
		}
		if _, err := op.Open(env); !errors.Is(err, ErrReplay) {
			t.Fatalf("second Open of the same envelope: %v", err)
		}
	})
}

func TestNewPipeID(t *testing.T) {
	a, b := NewPipeID(), NewPipeID()
	if len(a) != 32 || a == b {
		t.Fatalf("NewPipeID gave %q and %q", a, b)
	}
	if len(a) > MaxPipeIDLen {
		t.Fatalf("pipe id longer than MaxPipeIDLen")
	}
}

// A body from a newer agent, with a field this version does not know,
// opens with the fields it does know.
func TestOpenNewerBody(t *testing.T) {
	alice, bob := mustID(t), mustID(t)
	plain := []byte(`{"type":"CON","pipe_id":"p2","ttl":30,"ts":` + fmt.Sprint(time.Now().UnixMilli()) +
		`,"payload":{"a":1},"priority":"high"}`)
	env := make([]byte, headerSize, headerSize+len(plain)+box.Overhead)
	env[0] = Version
	copy(env[1:], alice.Public[:])
	var nonce [nonceSize]byte
	nonce[0] = 7
	copy(env[1+identity.KeySize:], nonce[:])
	env = box.Seal(env, plain, &nonce, &bob.Public, &alice.Private)
	m, err := NewOpener(bob, OpenerConfig{}).Open(env)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if m.Type != TypeCon || m.PipeID != "p2" || string(m.Payload) != `{"a":1}` {
		t.Fatalf("opened %+v", m)
	}
}
