package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/metricstest"
	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/natlab"
)

// startAPI runs an API with cfg on a loopback port until the test ends.
func startAPI(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	cfg.Listen = []string{"127.0.0.1:0"}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, "http://" + s.Addrs()[0].String()
}

// apiFor runs the API on a loopback port in front of a lab agent and hands
// it the agent's inbound pipes.
func apiFor(t testing.TB, a *agenttest.Agent) (*Server, string) {
	t.Helper()
	s, base := startAPI(t, Config{Backend: a.Agent, Gatherer: a.Reg, Version: "test"})
	go func() {
		for p := range a.Inbound {
			s.Inbound(p)
		}
	}()
	return s, base
}

type call struct {
	method, path, origin, body string
	headers                    map[string]string
}

func do(t testing.TB, base string, c call) (map[string]any, []byte) {
	t.Helper()
	method := c.method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.body == "" {
		req.Body = nil
	}
	if c.origin != "" {
		req.Header.Set("Origin", c.origin)
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d (P2PD answers 200 always): %s", method, c.path, resp.StatusCode, raw)
	}
	var m map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: %v: %s", c.path, err, raw)
		}
	}
	return m, raw
}

func wantErr(t *testing.T, m map[string]any, code int) {
	t.Helper()
	if got, _ := m["error"].(float64); int(got) != code {
		t.Fatalf("error %v, want %d: %v", m["error"], code, m)
	}
}

func TestAPI(t *testing.T) {
	lab := natlab.New(t)
	st := agenttest.NewStack(t, lab, agenttest.MQTTD)
	a := agenttest.StartAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("a"), st)
	b := agenttest.StartAgent(t, lab.AddRouter("home", natlab.PortRestrictedCone).AddHost("b"), st)
	_, api := apiFor(t, a)
	_, bAPI := apiFor(t, b)

	t.Run("version, addr, ifs", func(t *testing.T) {
		m, _ := do(t, api, call{path: "/p2p/version"})
		wantErr(t, m, errOK)
		if m["version"] != "test" {
			t.Errorf("version %v", m)
		}
		m, _ = do(t, api, call{path: "/p2p/addr"})
		if m["addr"] != a.Addr(t) {
			t.Errorf("addr %v, want %s", m["addr"], a.Addr(t))
		}
		m, raw := do(t, bAPI, call{path: "/ifs"})
		ifs := m["ifs"].([]any)[0].(map[string]any)
		if ifs["nat"].(map[string]any)["type"] != 5.0 || ifs["rp"].(map[string]any)["2"] == nil {
			t.Errorf("ifs: %s", raw)
		}
	})

	bAddr := url.PathEscape(b.Addr(t))
	t.Run("open, send ECHO, recv", func(t *testing.T) {
		m, raw := do(t, api, call{path: "/p2p/open/c1/" + bAddr})
		wantErr(t, m, errOK)
		if m["strategy"] != "reverse" || m["path"] != "reverse" || m["peer"] != b.ID() {
			t.Fatalf("con_info: %s", raw)
		}
		m, _ = do(t, api, call{path: "/p2p/send/c1/ECHO%20hello,%20world!"})
		if m["sent"] != 18.0 {
			t.Errorf("send: %v", m)
		}
		m, raw = do(t, api, call{path: "/p2p/recv/c1/timeout/5"})
		if m["data"] != "hello, world!" {
			t.Errorf("recv: %s", raw)
		}
	})

	t.Run("binary", func(t *testing.T) {
		payload := "ECHO \xc8\xc9\xca\xcb"
		m, _ := do(t, api, call{method: http.MethodPost, path: "/p2p/binary/c1", body: payload})
		if m["sent"] != 9.0 {
			t.Fatalf("binary send: %v", m)
		}
		_, raw := do(t, api, call{path: "/p2p/binary/c1/timeout/5"})
		if string(raw) != "\xc8\xc9\xca\xcb" {
			t.Errorf("binary recv: %q", raw)
		}
	})

	t.Run("subscriptions", func(t *testing.T) {
		wantErr(t, must(do(t, api, call{path: "/p2p/sub/c1/msg_p/%5Epong"})), errOK)
		do(t, api, call{path: "/p2p/send/c1/ECHO%20pong%201"})
		m, _ := do(t, api, call{path: "/p2p/recv/c1/msg_p/%5Epong/timeout/5"})
		if m["data"] != "pong 1" {
			t.Errorf("filtered recv: %v", m)
		}
		wantErr(t, must(do(t, api, call{method: http.MethodDelete, path: "/p2p/sub/c1/msg_p/%5Epong"})), errOK)
		wantErr(t, must(do(t, api, call{path: "/p2p/recv/c1/msg_p/%5Epong/timeout/0.1"})), errEmpty)
	})

	t.Run("inbound visible on the peer", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			m, _ := do(t, bAPI, call{path: "/p2p/cons"})
			for _, c := range m["cons"].([]any) {
				if c := c.(map[string]any); c["inbound"] == true && c["peer"] == a.ID() {
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Error("b's API does not list the inbound pipe from a")
	})

	t.Run("pipe relay", func(t *testing.T) {
		c, err := net.Dial("tcp", strings.TrimPrefix(api, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /p2p/pipe/c1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		time.Sleep(100 * time.Millisecond)
		fmt.Fprintf(c, "ECHO relayed")
		// Messages queued earlier (e.g. the subscription test's "pong 1")
		// are relayed first; read until our echo arrives.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []byte
		r := bufio.NewReader(c)
		for !strings.Contains(string(got), "relayed") {
			b, err := r.ReadByte()
			if err != nil {
				t.Fatalf("relay: got %q, then %v", got, err)
			}
			got = append(got, b)
		}
	})

	t.Run("messages after a relay ends are queued again", func(t *testing.T) {
		c := dialRaw(t, strings.TrimPrefix(api, "http://"))
		fmt.Fprintf(c, "GET /p2p/pipe/c1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nECHO during")
		got := make([]byte, len("during"))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "during" {
			t.Fatalf("relay: %q %v", got, err)
		}
		c.Close()
		// The relay ends once it sees the close; a later echo is queued.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			do(t, api, call{path: "/p2p/send/c1/ECHO%20after"})
			m := must(do(t, api, call{path: "/p2p/recv/c1/timeout/1"}))
			if m["data"] == "after" {
				return
			}
		}
		t.Error("nothing queued after the relay ended")
	})

	t.Run("origins", func(t *testing.T) { testOrigins(t, api) })
	t.Run("null-origin pipe from a browser", func(t *testing.T) { testBrowserPipe(t, api) })
	t.Run("token", func(t *testing.T) { testToken(t, a) })

	t.Run("close", func(t *testing.T) {
		m, _ := do(t, api, call{path: "/p2p/close/c1"})
		if m["closed"] != "c1" {
			t.Errorf("close: %v", m)
		}
		wantErr(t, must(do(t, api, call{path: "/p2p/con/c1"})), errNotFound)
	})

	t.Run("send after the peer closed says closed", func(t *testing.T) {
		before := map[string]bool{}
		for _, c := range must(do(t, bAPI, call{path: "/p2p/cons"}))["cons"].([]any) {
			before[c.(map[string]any)["name"].(string)] = true
		}
		wantErr(t, must(do(t, api, call{path: "/p2p/open/c2/" + bAddr})), errOK)
		var in string
		for deadline := time.Now().Add(5 * time.Second); in == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, c := range must(do(t, bAPI, call{path: "/p2p/cons"}))["cons"].([]any) {
				if n := c.(map[string]any)["name"].(string); !before[n] && c.(map[string]any)["inbound"] == true {
					in = n
				}
			}
		}
		if in == "" {
			t.Fatal("no inbound pipe on b")
		}
		wantErr(t, must(do(t, bAPI, call{path: "/p2p/close/" + in})), errOK)
		var m map[string]any
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if m = must(do(t, api, call{path: "/p2p/send/c2/hi"})); m["error"] != 0.0 {
				break
			}
		}
		if m["error"] != float64(errNotFound) || !strings.Contains(m["msg"].(string), `"c2" is closed`) {
			t.Errorf("send after the peer closed: %v", m)
		}
	})

	t.Run("self", func(t *testing.T) {
		m, raw := do(t, api, call{path: "/p2p/open/me/self"})
		wantErr(t, m, errOK)
		if m["peer"] != a.ID() {
			t.Errorf("self: %s", raw)
		}
	})

	t.Run("event stream", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, api+"/p2p/events", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
		}
		r := bufio.NewReader(resp.Body)
		ev, _ := r.ReadString('\n')
		data, _ := r.ReadString('\n')
		var snap snapshot
		if ev != "event: status\n" || json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &snap) != nil {
			t.Fatalf("first event %q %q", ev, data)
		}
		if snap.NodeID != a.ID() || len(snap.Ifs) == 0 || len(snap.Brokers) != 1 || !snap.Brokers[0].Subscribed ||
			len(snap.STUN) != 2 || snap.PortMap == nil {
			t.Errorf("snapshot %+v", snap)
		}
		names := map[string]bool{}
		for _, c := range snap.Cons {
			names[c.Name] = true
			if len(c.Phases) == 0 {
				t.Errorf("connection %s has no phases: %+v", c.Name, c)
			}
		}
		if !names["me"] {
			t.Errorf("cons %+v lack me", snap.Cons)
		}
		// Later events bring the STUN servers' state (checked in the
		// background) without a new request.
		for ok := false; !ok; {
			ev, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("no event with the STUN servers answering: %v (last %+v)", err, snap.STUN)
			}
			if ev != "event: status\n" {
				continue
			}
			data, _ := r.ReadString('\n')
			if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &snap); err != nil {
				t.Fatal(err)
			}
			ok = len(snap.STUN) == 2 && snap.STUN[0].OK && snap.STUN[1].OK && snap.STUN[0].Mapped != ""
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name string
			c    call
			code int
		}{
			{"unknown method", call{path: "/p2p/teleport"}, errNoMethod},
			{"wrong verb", call{method: http.MethodPut, path: "/p2p/addr"}, errNoMethod},
			{"foreign origin", call{path: "/p2p/addr", origin: "http://evil.example"}, errTimeout},
			{"origin with a path", call{path: "/p2p/addr", origin: "http://localhost/x"}, errTimeout},
			{"embedded in another site's page", call{path: "/p2p/addr", headers: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}}, errTimeout},
			{"form from another site", call{path: "/p2p/addr", origin: "null", headers: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}}, errTimeout},
			{"null origin refused by default", call{path: "/p2p/addr", origin: "null", headers: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}}, errTimeout},
			{"name not UTF-8", call{path: "/p2p/send/%ff/hi"}, errBadInput},
			{"open name not UTF-8", call{path: "/p2p/open/%ff%fe/self"}, errBadInput},
			{"P2PD's sample address", call{path: "/p2p/open/x/" + url.PathEscape("[0,1.3.3.7,192.168.21.21,58959,3,2,0]-0-looongcatislong")}, errConnect},
			{"name exists", call{path: "/p2p/open/me/self"}, errExists},
			{"bad address", call{path: "/p2p/open/x/0-0-0-nope"}, errConnect},
			{"unknown name", call{path: "/p2p/send/nope/hi"}, errNotFound},
			{"recv timeout", call{path: "/p2p/recv/me/timeout/0.1"}, errTimeout},
			{"recv unknown sub", call{path: "/p2p/recv/me/msg_p/zzz/timeout/0.1"}, errEmpty},
			{"bad option", call{path: "/p2p/recv/me/colour/red"}, errBadInput},
			{"odd options", call{path: "/p2p/recv/me/timeout"}, errBadInput},
			{"bad timeout", call{path: "/p2p/recv/me/timeout/-1"}, errBadInput},
			{"bad regex", call{path: "/p2p/sub/me/msg_p/%28"}, errBadInput},
			{"empty binary", call{method: http.MethodPost, path: "/p2p/binary/me"}, errBadLength},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { wantErr(t, must(do(t, api, tt.c)), tt.code) })
		}
	})

	t.Run("status page and metrics", func(t *testing.T) {
		_, raw := do(t, api, call{path: "/"})
		if !strings.Contains(string(raw), "/p2p/events") {
			t.Errorf("status page does not use the event stream")
		}
		_, raw = do(t, api, call{path: "/metrics"})
		if !strings.Contains(string(raw), "agent_connects_total") {
			t.Errorf("metrics lack agent_connects_total")
		}
		metricstest.Lint(t, a.Reg, "agent")
	})
}

func must(m map[string]any, _ []byte) map[string]any { return m }

// TestLoopbackOnly: the API refuses non-loopback listen addresses and Host
// headers (DNS rebinding).
func TestLoopbackOnly(t *testing.T) {
	s, err := New(Config{Backend: nilBackend{}, Listen: []string{"0.0.0.0:0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "not loopback") {
		t.Fatalf("got %v", err)
	}
	s, _ = New(Config{Backend: nilBackend{}, Listen: []string{"127.0.0.1:0"}})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Addrs()[0].String()+"/p2p/version", nil)
	req.Host = "attacker.example:12333"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if m["msg"] != "Invalid host." {
		t.Errorf("foreign Host accepted: %v", m)
	}
}
