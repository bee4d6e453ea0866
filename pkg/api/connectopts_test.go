package api

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/node"
)

func TestConnectOptions(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  node.Options
		err   string
	}{
		{query: "", want: node.Options{}},
		{query: "strategies=relay,direct&timeout=3s", want: node.Options{Strategies: []string{"relay", "direct"}, Timeout: 3 * time.Second}},
		{query: "stagger=0&token=x", want: node.Options{NoStagger: true}},
		{query: "strategies=relay,", err: "empty name"},
		{query: "timeout=forever", err: "want a duration"},
		{query: "timeout=1h", err: "want a duration"},
		{query: "stagger=maybe", err: "want 0 or 1"},
		{query: "timeout=1s&timeout=2s", err: "2 times"},
		{query: "strategy=relay", err: "unknown query parameter"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := connectOptions(q)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
}

// /p2p/open takes the strategies to race: two symmetric peers, the relay
// named first, and the answer says the relay won; an unknown strategy or a
// bad timeout is refused with P2PD's error JSON.
func TestOpenWithStrategies(t *testing.T) {
	lab := natlab.New(t)
	st := agenttest.NewStack(t, lab, agenttest.MQTTD)
	st.StartTURN(t)
	a := agenttest.StartAgent(t, lab.AddRouter("ra", natlab.Symmetric).AddHost("a"), st)
	b := agenttest.StartAgent(t, lab.AddRouter("rb", natlab.Symmetric).AddHost("b"), st)
	_, base := apiFor(t, a)
	addr := url.PathEscape(b.Addr(t))
	got, _ := do(t, base, call{path: "/p2p/open/r/" + addr + "?strategies=relay,direct&timeout=5s"})
	if got["error"] != float64(0) || got["strategy"] != node.KindRelay {
		t.Fatalf("open with strategies=relay,direct: %v", got)
	}
	// The relayed pipe stays on the relay: between two symmetric NATs the
	// plan rules every upgrade out, and the report says so.
	// (The attempts run in the background: the phases come shortly.)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		info, raw := do(t, base, call{path: "/p2p/con/r"})
		if info["path"] == node.KindRelay && strings.Contains(string(raw), "upgrade punch") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("con_info of the relayed pipe: %s", raw)
		}
	}
	got, _ = do(t, base, call{path: "/p2p/open/x/" + addr + "?strategies=carrier-pigeon"})
	if got["error"] == float64(0) || !strings.Contains(fmt.Sprint(got["msg"]), "unknown strategy") {
		t.Errorf("unknown strategy: %v", got)
	}
	got, _ = do(t, base, call{path: "/p2p/open/y/" + addr + "?timeout=soon"})
	if got["error"] == float64(0) || !strings.Contains(fmt.Sprint(got["msg"]), "timeout") {
		t.Errorf("bad timeout: %v", got)
	}
}
