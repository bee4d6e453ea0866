package node

import (
	"strings"
	"testing"
	"time"
)

// TestPlan: the plan lists every strategy in order with the race's skip
// rules and staggered starts, without connecting.
func TestPlan(t *testing.T) {
	b, in := startNode(t, "127.0.0.1")
	a, err := New(Config{Identity: newID(t), Listen: []string{"127.0.0.1:0"}, Delays: map[string]time.Duration{"later": 300 * time.Millisecond},
		Extra: []Strategy{&testStrategy{name: "never", skip: "cannot work here"}, &testStrategy{name: "later"}}})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := a.Plan(addressOf(b), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name  string
		run   bool
		start time.Duration
		why   string
	}{
		{Direct, true, 0, "127.0.0.1:"},                         // the peer is open: dial it
		{Reverse, false, 0, "no signalling"},                    // no signalling configured
		{"never", false, 0, "cannot work here"},                 // its plan skips it
		{"later", true, 300 * time.Millisecond, "rules it out"}, // second to run: staggered
	}
	if len(steps) != len(want) {
		t.Fatalf("%d steps, want %d: %+v", len(steps), len(want), steps)
	}
	for i, w := range want {
		st := steps[i]
		if st.Strategy != w.name || st.Run != w.run || st.Start != w.start || !strings.Contains(st.Why, w.why) {
			t.Errorf("step %d: %+v, want %s run=%v start=%v why ~ %q", i, st, w.name, w.run, w.start, w.why)
		}
		if st.Run && st.Deadline <= 0 {
			t.Errorf("step %d runs without a deadline", i)
		}
	}
	if _, err := a.Plan(addressOf(b), Options{Strategies: []string{"nope"}}); err == nil {
		t.Error("a plan with an unknown strategy")
	}
	select {
	case p := <-in:
		t.Fatalf("planning connected: %+v", p.hello)
	default:
	}
}
