package api

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
)

// testOrigins: loopback origins with any port are accepted and get CORS
// headers; null and foreign origins are refused; preflights for every
// method the API serves succeed for allowed origins only.
func testOrigins(t *testing.T, api string) {
	origins := []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://localhost", true},
		{"http://localhost:8000", true},
		{"http://127.0.0.1", true},
		{"http://127.0.0.1:5173", true},
		{"http://[::1]:8080", true},
		{"https://localhost:8443", true},
		{"null", false},
		{"http://evil.example", false},
		{"http://localhost.evil.example", false},
		{"http://127.0.0.2:8000", false},
		{"http://localhost:", false},
		{"http://localhost:0", false},
		{"http://localhost:080", false},
		{"http://user@localhost", false},
		{"file://", false},
		{"ftp://localhost", false},
	}
	for _, o := range origins {
		t.Run("GET from "+o.origin, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, api+"/p2p/version", nil)
			if o.origin != "" {
				req.Header.Set("Origin", o.origin)
			}
			resp, m := send(t, req)
			if got := m["error"] == 0.0; got != o.ok {
				t.Fatalf("accepted %v, want %v: %v", got, o.ok, m)
			}
			if acao := resp.Header.Get("Access-Control-Allow-Origin"); o.ok && acao != o.origin || !o.ok && acao != "" {
				t.Errorf("Access-Control-Allow-Origin %q", acao)
			}
		})
	}
	// Browsers preflight DELETE (always), POST with a non-simple content type,
	// and GET with X-Requested-With or Authorization. DELETE's preflight
	// carries no Access-Control-Request-Headers.
	preflights := []struct {
		method, path, headers string
	}{
		{http.MethodDelete, "/p2p/sub/c1/msg_p/x", ""},
		{http.MethodPost, "/p2p/binary/c1", "content-type"},
		{http.MethodGet, "/p2p/binary/c1", "x-requested-with"},
		{http.MethodGet, "/p2p/addr", "authorization"},
	}
	for _, p := range preflights {
		for _, o := range []struct {
			origin string
			ok     bool
		}{{"http://localhost:8000", true}, {"http://[::1]:3000", true}, {"null", false}, {"https://evil.example", false}} {
			t.Run("preflight "+p.method+" "+p.headers+" from "+o.origin, func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodOptions, api+p.path, nil)
				req.Header.Set("Origin", o.origin)
				req.Header.Set("Access-Control-Request-Method", p.method)
				if p.headers != "" {
					req.Header.Set("Access-Control-Request-Headers", p.headers)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				h := resp.Header
				allowed := resp.StatusCode == http.StatusOK && h.Get("Access-Control-Allow-Origin") == o.origin &&
					strings.Contains(h.Get("Access-Control-Allow-Methods"), p.method) &&
					(p.headers == "" || strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), p.headers))
				if allowed != o.ok {
					t.Errorf("preflight allowed %v, want %v: HTTP %d %v", allowed, o.ok, resp.StatusCode, h)
				}
			})
		}
	}
}

// testBrowserPipe: a null-origin pipe request shaped as a browser sends it
// (with Host) is refused, and the manual's Host-less form is not looked at
// when it follows another request on the connection or hides in a body.
func testBrowserPipe(t *testing.T, api string) {
	addr := strings.TrimPrefix(api, "http://")
	t.Run("browser form", func(t *testing.T) {
		m := rawJSON(t, addr, "GET /p2p/pipe/c1 HTTP/1.1\r\nHost: "+addr+"\r\nOrigin: null\r\n\r\n")
		wantErr(t, m, errTimeout)
	})
	t.Run("pipelined after a request", func(t *testing.T) {
		c := dialRaw(t, addr)
		io.WriteString(c, "GET /p2p/version HTTP/1.1\r\nHost: "+addr+"\r\n\r\nGET /p2p/pipe/c1 HTTP/1.1\r\nOrigin: null\r\n\r\nECHO smuggled")
		all, _ := io.ReadAll(c) // one response, then the server closes
		if strings.Contains(string(all), "smuggled") || strings.Count(string(all), "HTTP/1.1 ") != 1 {
			t.Errorf("second request was served: %q", all)
		}
	})
	t.Run("in a POST body", func(t *testing.T) {
		body := "GET /p2p/pipe/c1 HTTP/1.1\r\nOrigin: null\r\n\r\nECHO smuggled"
		c := dialRaw(t, addr)
		io.WriteString(c, "POST /p2p/binary/nope HTTP/1.1\r\nHost: "+addr+"\r\nContent-Type: text/plain\r\nContent-Length: "+
			strconv.Itoa(len(body))+"\r\n\r\n"+body)
		all, _ := io.ReadAll(c)
		if strings.Contains(string(all), "smuggled") || strings.Count(string(all), "HTTP/1.1 ") != 1 {
			t.Errorf("body was served as a request: %q", all)
		}
	})
	t.Run("bad requests get error JSON", func(t *testing.T) {
		for _, req := range []string{
			"GET /p2p/send/c1/%zz HTTP/1.1\r\nHost: " + addr + "\r\n\r\n",
			"GET /p2p/send/c1/" + strings.Repeat("a", 20000) + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n",
			"GET /p2p/version HTTP/1.1\r\n\r\n",
			"NONSENSE\r\n\r\n",
		} {
			m := rawJSON(t, addr, req)
			wantErr(t, m, errBadInput)
		}
	})
}

func send(t *testing.T, req *http.Request) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return resp, m
}

// testToken: with a token, requests without it are refused (the raw pipe
// request too), with it they work; the null origin needs its flag.
func testToken(t *testing.T, a *agenttest.Agent) {
	path := filepath.Join(t.TempDir(), "state", TokenFile)
	tok, err := LoadOrCreateToken(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 || len(tok) != 64 {
		t.Fatalf("token file: %v %v %q", st.Mode(), err, tok)
	}
	if again, err := LoadOrCreateToken(path); err != nil || again != tok {
		t.Fatalf("token not kept: %v", err)
	}
	s, base := startAPI(t, Config{Backend: a.Agent, Token: tok, AllowNullOrigin: true})
	tests := []struct {
		name, path, auth, origin string
		ok                       bool
	}{
		{"none", "/p2p/addr", "", "", false},
		{"wrong", "/p2p/addr", "Bearer nope", "", false},
		{"basic", "/p2p/addr", "Basic " + tok, "", false},
		{"bearer", "/p2p/addr", "Bearer " + tok, "", true},
		{"query", "/p2p/addr?token=" + tok, "", "", true},
		{"null origin with the flag", "/p2p/addr", "Bearer " + tok, "null", true},
		{"healthz needs none", "/healthz", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, base+tt.path, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ok := !strings.Contains(string(body), `"error": 5`)
			if ok != tt.ok {
				t.Errorf("accepted %v, want %v: %s", ok, tt.ok, body)
			}
		})
	}
	t.Run("raw pipe without the token is closed", func(t *testing.T) {
		if m := must(do(t, base, call{path: "/p2p/open/tp/self", headers: map[string]string{"Authorization": "Bearer " + tok}})); m["error"] != 0.0 {
			t.Fatalf("open: %v", m)
		}
		c, err := net.Dial("tcp", s.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /p2p/pipe/tp HTTP/1.1\r\nOrigin: null\r\n\r\nECHO x")
		if all, _ := io.ReadAll(c); len(all) != 0 {
			t.Errorf("got %q", all)
		}
	})
	t.Run("raw pipe with the token", func(t *testing.T) {
		c, err := net.Dial("tcp", s.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /p2p/pipe/tp HTTP/1.1\r\nOrigin: null\r\nAuthorization: Bearer "+tok+"\r\n\r\nECHO tok-ok")
		got := make([]byte, 6)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "tok-ok" {
			t.Errorf("got %q %v", got, err)
		}
	})
	t.Run("group-readable token file refused", func(t *testing.T) {
		if err := os.Chmod(path, 0o640); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadToken(path); err == nil || !strings.Contains(err.Error(), "must be 0600") {
			t.Errorf("got %v", err)
		}
	})
}
