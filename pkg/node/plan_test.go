package node

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/p2pd-go/p2pd/pkg/signal"
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

// TestSkipReasons: direct and reverse name what filters, per family: a
// NAT where a block is translated, a firewall where its external address
// is its own (public IPv4, global IPv6).
func TestSkipReasons(t *testing.T) {
	blk := func(ext, nic string, typ int) peeraddr.Block {
		return peeraddr.Block{Ext: netip.MustParseAddr(ext), NIC: netip.MustParseAddr(nic), Port: 10001, NATType: typ, DeltaType: 2}
	}
	nat4 := blk("203.0.113.5", "10.0.0.5", 5)
	pub4 := blk("203.0.113.6", "203.0.113.6", 5)
	fw6 := blk("2001:db8:0:1::10", "2001:db8:0:1::10", 5)
	nat66 := blk("2001:db8::5", "fd00::5", 5)
	for _, tt := range []struct {
		name string
		addr peeraddr.Address
		want string
	}{
		{"IPv4 NAT", peeraddr.Address{IPv4: []peeraddr.Block{nat4}}, "IPv4 NAT filters"},
		{"public IPv4 firewall", peeraddr.Address{IPv4: []peeraddr.Block{pub4}}, "IPv4 firewall filters"},
		{"IPv6 firewall", peeraddr.Address{IPv6: []peeraddr.Block{fw6}}, "IPv6 firewall filters"},
		{"IPv4 NAT and IPv6 firewall", peeraddr.Address{IPv4: []peeraddr.Block{nat4}, IPv6: []peeraddr.Block{fw6}}, "IPv4 NAT and IPv6 firewall filter"},
		{"both IPv4 kinds", peeraddr.Address{IPv4: []peeraddr.Block{nat4, pub4}}, "IPv4 NAT and firewall filter"},
		{"NAT66", peeraddr.Address{IPv6: []peeraddr.Block{nat66}}, "IPv6 NAT filters"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.addr.NodeID = "peer"
			mine := peeraddr.Address{NodeID: "me", IPv4: []peeraddr.Block{blk("198.51.100.7", "10.9.0.7", 5)}}
			if got := (directStrategy{}).Plan(Attempt{To: tt.addr, Mine: mine}); !strings.Contains(got, "the peer's "+tt.want+" unsolicited connections") {
				t.Errorf("direct: %q, want it to name %q", got, tt.want)
			}
			r := reverseStrategy{n: &Node{cfg: Config{Signal: nopSignal{}, Address: func() (peeraddr.Address, error) { return tt.addr, nil }}}}
			if got := r.Plan(Attempt{To: mine, Mine: tt.addr}); !strings.Contains(got, "our "+tt.want+" unsolicited connections, so the peer cannot connect back") {
				t.Errorf("reverse: %q, want it to name %q", got, tt.want)
			}
		})
	}
}

// nopSignal is a Signaller that sends nothing: reverse's plan only needs one.
type nopSignal struct{}

func (nopSignal) SendTo(context.Context, peeraddr.Address, signal.Body) error { return nil }
