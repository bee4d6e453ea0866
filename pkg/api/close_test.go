package api

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/natlab"
)

// A relayed connection closed while the peer cannot take what was just
// sent: /p2p/close still closes it, and says the bytes may not have arrived
// instead of answering a plain success.
func TestCloseUnread(t *testing.T) {
	lab := natlab.New(t)
	st := agenttest.NewStack(t, lab, agenttest.MQTTD)
	st.StartTURN(t)
	a := agenttest.StartAgent(t, lab.AddRouter("ra", natlab.Symmetric).AddHost("a"), st)
	hb := lab.AddRouter("rb", natlab.Symmetric).AddHost("b")
	b := agenttest.StartAgent(t, hb, st)
	_, api := apiFor(t, a)
	_, _ = apiFor(t, b)

	open := func(name string) {
		t.Helper()
		m, raw := do(t, api, call{path: "/p2p/open/" + name + "/" + url.PathEscape(b.Addr(t)) + "?strategies=relay"})
		wantErr(t, m, errOK)
		if m["strategy"] != "relay" {
			t.Fatalf("con_info: %s", raw)
		}
		m, _ = do(t, api, call{path: "/p2p/send/" + name + "/ECHO%20up"})
		wantErr(t, m, errOK)
		m, raw = do(t, api, call{path: "/p2p/recv/" + name + "/timeout/20"})
		if m["data"] != "up" {
			t.Fatalf("echo over the relay: %s", raw)
		}
	}

	t.Run("peer read everything", func(t *testing.T) {
		open("ok")
		m, raw := do(t, api, call{path: "/p2p/close/ok"})
		wantErr(t, m, errOK)
		if m["closed"] != "ok" {
			t.Errorf("close: %s", raw)
		}
	})

	t.Run("peer cut off", func(t *testing.T) {
		open("cut")
		// b's host drops everything from now on: what a sends is never acked.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := hb.Command(ctx, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader("table inet cut {\n" +
			" chain in { type filter hook input priority -400; policy drop; }\n" +
			" chain out { type filter hook output priority -400; policy drop; }\n}\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft: %v: %s", err, out)
		}
		m, _ := do(t, api, call{path: "/p2p/send/cut/never%20read"})
		wantErr(t, m, errOK)
		m, raw := do(t, api, call{path: "/p2p/close/cut"})
		wantErr(t, m, errSendFailed)
		if m["closed"] != "cut" || !strings.Contains(fmt.Sprint(m["msg"]), "peer read") {
			t.Errorf("close: %s", raw)
		}
		m, _ = do(t, api, call{path: "/p2p/con/cut"})
		wantErr(t, m, errNotFound)
	})
}
