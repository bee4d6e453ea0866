package api

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/natlab"
)

// dialRaw opens a TCP connection to the API, closed and bounded in time
// by the test.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// rawDo writes request bytes exactly as given on a new connection and
// reads one HTTP response.
func rawDo(t *testing.T, addr, request string) (*http.Response, []byte) {
	t.Helper()
	c := dialRaw(t, addr)
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// curlGET is the request curl sends for `curl http://localhost:PORT<target>`
// (curl sends the URL's path as written).
func curlGET(method, port, target string) string {
	return method + " " + target + " HTTP/1.1\r\nHost: localhost:" + port + "\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
}

// rawJSON is rawDo for a JSON answer.
func rawJSON(t *testing.T, addr, request string) map[string]any {
	t.Helper()
	resp, body := rawDo(t, addr, request)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("HTTP %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return m
}

// TestManualWalkthrough runs the P2PD manual's REST walkthrough (§1.3 and
// "Queues") against a running agent, sending the manual's requests as
// written: curl's requests for the curl lines, the jQuery calls' requests
// for binary push and pull, and the raw pipe request byte for byte.
func TestManualWalkthrough(t *testing.T) {
	lab := natlab.New(t)
	st := agenttest.NewStack(t, lab, agenttest.MQTTD)
	a := agenttest.StartAgent(t, lab.AddRouter("home", natlab.PortRestrictedCone).AddHost("a"), st)
	srv, _ := apiFor(t, a)
	addr := srv.Addrs()[0].String()
	_, port, _ := net.SplitHostPort(addr)
	get := func(t *testing.T, target string) map[string]any {
		t.Helper()
		return rawJSON(t, addr, curlGET("GET", port, target))
	}

	t.Run("1.3.2 version", func(t *testing.T) {
		m := get(t, "/version")
		if m["title"] != "p2pd" || m["version"] != "test" {
			t.Errorf("version: %v", m)
		}
	})
	t.Run("1.3.3 addr", func(t *testing.T) {
		m := get(t, "/p2p/addr")
		wantErr(t, m, errOK)
		if m["addr"] != a.Addr(t) {
			t.Errorf("addr %v, want %s", m["addr"], a.Addr(t))
		}
	})
	t.Run("1.3.4 open self", func(t *testing.T) {
		m := get(t, "/p2p/open/con_name/self")
		wantErr(t, m, errOK)
		if m["name"] != "con_name" || m["peer"] != a.ID() {
			t.Fatalf("con_info: %v", m)
		}
		for _, k := range []string{"laddr", "raddr"} {
			tup, _ := m[k].([]any)
			if len(tup) != 2 || net.ParseIP(tup[0].(string)) == nil || tup[1].(float64) < 1 {
				t.Errorf("%s is not [ip, port]: %v", k, m[k])
			}
		}
		ifc, _ := m["if"].(map[string]any)
		route, _ := m["route"].(map[string]any)
		if ifc["name"] != a.Interfaces()[0].Name || ifc["offset"] != 0.0 {
			t.Errorf("if: %v", m["if"])
		}
		if route["af"] != 2.0 || len(route["nic_ips"].([]any)) == 0 || len(route["ext_ips"].([]any)) == 0 {
			t.Errorf("route: %v", m["route"])
		}
	})
	t.Run("1.3.5 send and recv", func(t *testing.T) {
		m := get(t, "/p2p/send/con_name/ECHO%20hello,%20world!")
		if m["sent"] != 18.0 || m["name"] != "con_name" {
			t.Errorf("send: %v", m)
		}
		m = get(t, "/p2p/recv/con_name")
		if m["data"] != "hello, world!" {
			t.Errorf("recv: %v", m)
		}
		if tup, _ := m["client_tup"].([]any); len(tup) != 2 {
			t.Errorf("client_tup: %v", m["client_tup"])
		}
	})
	t.Run("1.3.6 binary push and pull", func(t *testing.T) {
		// What jQuery's $.ajax sends from a page on http://localhost:PORT.
		payload := string([]byte{69, 67, 72, 79, 32, 200, 201, 202, 203})
		push := "POST /p2p/binary/con_name HTTP/1.1\r\nHost: localhost:" + port + "\r\nContent-Type: application/octet-stream\r\n" +
			"Content-Length: 9\r\nOrigin: http://localhost:" + port + "\r\nAccept: text/plain, */*; q=0.01\r\n\r\n" + payload
		m := rawJSON(t, addr, push)
		if m["sent"] != 9.0 || m["name"] != "con_name" {
			t.Fatalf("binary push: %v", m)
		}
		pull := "GET /p2p/binary/con_name HTTP/1.1\r\nHost: localhost:" + port + "\r\nX-Requested-With: XMLHttpRequest\r\n" +
			"Origin: http://localhost:" + port + "\r\n\r\n"
		resp, body := rawDo(t, addr, pull)
		if resp.Header.Get("Content-Type") != "application/octet-stream" || string(body) != "\xc8\xc9\xca\xcb" {
			t.Errorf("binary pull: %s %q", resp.Header.Get("Content-Type"), body)
		}
	})
	t.Run("Queues: sub, send, recv, unsub with a regex pair", func(t *testing.T) {
		en := url.PathEscape // encodeURIComponent for these patterns
		msgP, addrP := en(`[hH]e[l]+o`), en(`[\s\S]+`)
		pair := "/msg_p/" + msgP + "/addr_p/" + addrP
		m := get(t, "/p2p/sub/con_name"+pair)
		wantErr(t, m, errOK)
		if sub, _ := m["sub"].([]any); len(sub) != 2 || sub[0] != `[hH]e[l]+o` || sub[1] != `[\s\S]+` {
			t.Errorf("sub: %v", m)
		}
		if m := get(t, "/p2p/send/con_name/"+en("ECHO Hello, world!")); m["sent"] != 18.0 {
			t.Errorf("send: %v", m)
		}
		if m := get(t, "/p2p/recv/con_name"+pair); m["data"] != "Hello, world!" {
			t.Errorf("recv on the pair: %v", m)
		}
		m = rawJSON(t, addr, curlGET("DELETE", port, "/p2p/sub/con_name"+pair))
		wantErr(t, m, errOK)
		wantErr(t, get(t, "/p2p/recv/con_name"+pair), errEmpty)
	})
	t.Run("1.3.7 pipe request byte for byte", func(t *testing.T) {
		c := dialRaw(t, addr)
		// Drain what the all-messages queue holds from the steps above.
		get(t, "/p2p/recv/con_name/timeout/0.1")
		for m := get(t, "/p2p/recv/con_name/timeout/0.1"); m["error"] == 0.0; m = get(t, "/p2p/recv/con_name/timeout/0.1") {
		}
		if _, err := io.WriteString(c, "GET /p2p/pipe/con_name HTTP/1.1\r\nOrigin: null\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "ECHO hello world"); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len("hello world"))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello world" {
			t.Fatalf("relay: %q %v", got, err)
		}
	})
	t.Run("close", func(t *testing.T) {
		if m := get(t, "/p2p/close/con_name"); m["closed"] != "con_name" {
			t.Errorf("close: %v", m)
		}
		m := get(t, "/p2p/send/con_name/hi")
		wantErr(t, m, errNotFound)
		if !strings.Contains(m["msg"].(string), "closed") {
			t.Errorf("send after close: %v", m)
		}
	})
}
