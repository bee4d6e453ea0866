package node

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Hello.Resume crosses the handshake and both ends can read their Hello.
func TestHelloResume(t *testing.T) {
	a, b := newID(t), newID(t)
	c, s := tcpPair(t)
	ch := acceptAsync(s, b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sent := Hello{PipeID: "p1", Kind: KindRelay, Resume: true}
	cc, err := Initiate(ctx, c, a, b.Public, sent)
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.hello.Resume || r.sc.Hello() != r.hello || cc.Hello() != sent {
		t.Fatalf("hello: received %+v, responder's %+v, initiator's %+v", r.hello, r.sc.Hello(), cc.Hello())
	}
}

// Try runs one strategy with the caller's pipe id; the plan and unknown
// names are errors.
func TestTry(t *testing.T) {
	b, _ := startNode(t, "127.0.0.1")
	var gotID string
	skip := &testStrategy{name: "skip", skip: "not here"}
	a := startNodeWith(t, &testStrategy{name: "ok", connect: func(ctx context.Context, at Attempt) (*SecureConn, error) {
		gotID = at.PipeID
		return nil, errBoom
	}}, skip)
	for _, tc := range []struct {
		name, strategy string
		want           error
	}{
		{"plan skips", "skip", ErrSkipped},
		{"strategy fails", "ok", errBoom},
		{"unknown", "nope", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Try(context.Background(), addressOf(b), tc.strategy, "mine", time.Second)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	if gotID != "mine" {
		t.Errorf("strategy saw pipe id %q, want the caller's", gotID)
	}
	if why := a.PlanOf(addressOf(b), "skip"); why != "not here" {
		t.Errorf("PlanOf = %q", why)
	}
	sc, err := a.Try(context.Background(), addressOf(b), Direct, "d1", 0)
	if err != nil {
		t.Fatalf("direct: %v", err)
	}
	sc.Close()
}
