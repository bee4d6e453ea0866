package agent_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/signal"
)

// TestPunchOfferAttacks: PUNCH offers that would make the agent dial
// someone other than their sender, or into its own network, or that do not
// parse, are refused and counted. (An address naming another node never
// gets this far: signalling drops it.) None of them is answered (so none
// leads to a dial).
func TestPunchOfferAttacks(t *testing.T) {
	s, b, attacker := attackTarget(t)
	me := identity.NodeID(attacker.Public)
	addr := func(ext, id string) string { return fmt.Sprintf("0-[0,%s,10.9.0.5,10001,5,2,0]-0-%s", ext, id) }
	offer := func(targets ...string) json.RawMessage {
		now := time.Now()
		b, _ := json.Marshal(map[string]any{"at_us": now.Add(time.Second).UnixMicro(), "sent_us": now.UnixMicro(), "unc_us": 0, "targets": targets})
		return b
	}
	bodies := []signal.Body{
		// A third party as the target.
		{SrcAddr: addr("203.0.113.77", me), Payload: offer("203.0.113.99:22")},
		// A private "external" address: our own LAN.
		{SrcAddr: addr("10.1.0.1", me), Payload: offer("10.1.0.1:22")},
		// Garbage.
		{SrcAddr: addr("203.0.113.77", me), Payload: json.RawMessage(`{"targets":"all"}`)},
		// Loopback.
		{SrcAddr: addr("203.0.113.77", me), Payload: offer("127.0.0.1:22")},
	}
	for i, body := range bodies {
		body.Type, body.PipeID, body.TTL = signal.TypePunch, fmt.Sprintf("punch-attack-%d", i), 30
		env, err := signal.Seal(attacker, mustKey(t, b.ID()), body, nil)
		if err != nil {
			t.Fatal(err)
		}
		publishRaw(t, s, b.ID(), env)
	}
	count := func(r string) float64 { return counterValue(t, b, "agent_punch_offers_total", "result", r) }
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && count("refused") < float64(len(bodies)) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := count("refused"); got != float64(len(bodies)) {
		t.Errorf("refused %v, want %d", got, len(bodies))
	}
	if got := counterValue(t, b, "agent_signal_sent_total", "type", "PUNCH"); got != 0 {
		t.Errorf("the agent answered %v offers", got)
	}
}
