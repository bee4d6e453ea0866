package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/p2pd-go/p2pd/internal/testenv"
	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/natlab"
)

// devPage is what a developer's page on a loopback origin (another port)
// does with the API: requests a browser preflights (GET with
// X-Requested-With, POST octet-stream, DELETE), and, in a sandboxed iframe
// (origin "null", as any web site can make), the same reads and a connect.
const devPage = `<!doctype html><html><body><script>
const api = new URLSearchParams(location.search).get("api");
window.results = {};
async function call(key, path, init) {
  try {
    const r = await fetch(api + path, init);
    const t = await r.text();
    window.results[key] = t;
  } catch (e) { window.results[key] = "blocked: " + e.name; }
}
(async () => {
  await call("sub", "/p2p/sub/web/msg_p/" + encodeURIComponent("^pong"));
  const x = new Uint8Array([69, 67, 72, 79, 32, 112, 111, 110, 103]); // "ECHO pong"
  await call("push", "/p2p/binary/web", {method: "POST", body: x, headers: {"Content-Type": "application/octet-stream"}});
  await call("pull", "/p2p/binary/web/msg_p/" + encodeURIComponent("^pong") + "/timeout/5", {headers: {"X-Requested-With": "XMLHttpRequest"}});
  await call("unsub", "/p2p/sub/web/msg_p/" + encodeURIComponent("^pong"), {method: "DELETE"});
  window.addEventListener("message", (ev) => { window.results["sandboxed " + ev.data[0]] = ev.data[1]; });
  const f = document.createElement("iframe");
  f.sandbox = "allow-scripts";
  f.srcdoc = "<script>(async () => { for (const p of ['/p2p/addr', '/p2p/cons', '/p2p/open/evil/self', '/p2p/pipe/web']) {" +
    "let out; try { const r = await fetch(" + JSON.stringify(api) + " + p); out = await r.text(); } catch (e) { out = 'blocked: ' + e.name; }" +
    "parent.postMessage([p, out], '*'); } })();<\/script>";
  document.body.appendChild(f);
  window.results.done = "yes";
})();
</script></body></html>`

// TestBrowser drives the status page and a loopback dev page in headless
// Chromium against a running agent.
func TestBrowser(t *testing.T) {
	testenv.RequireTools(t, "chromium")
	lab := natlab.New(t)
	st := agenttest.NewStack(t, lab, agenttest.MQTTD)
	a := agenttest.StartAgent(t, lab.AddRouter("home", natlab.PortRestrictedCone).AddHost("a"), st)
	_, api := apiFor(t, a)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("chromium"), chromedp.NoSandbox, chromedp.WindowSize(1280, 1000),
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(bctx); err != nil { // starts the browser (no timeout on this one)
		t.Fatalf("chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()

	t.Run("status page is live", func(t *testing.T) {
		nat := a.Interfaces()[0].NAT
		if err := chromedp.Do(ctx, chromedp.Navigate(api+"/"),
			waitText("#ifs", nat.Info), waitText("#node_id", a.ID()), waitText("#addr", a.Addr(t))); err != nil {
			t.Fatalf("status page without the NAT profile (%s) or address: %v", nat.Info, err)
		}
		// A connection opened after the page loaded appears without a reload.
		if m := must(do(t, api, call{path: "/p2p/open/viewer/self"})); m["error"] != 0.0 {
			t.Fatalf("open: %v", m)
		}
		if err := chromedp.Do(ctx, waitText("#cons", "viewer"), waitText("#cons", "outbound"), waitText("#cons", "inbound direct handshake")); err != nil {
			t.Fatalf("new connection not shown: %v", err)
		}
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(os.TempDir(), "p2pd-status-page.png")
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("status page screenshot: %s", path)
	})

	t.Run("status page with a token", func(t *testing.T) {
		_, base := startAPI(t, Config{Backend: a.Agent, Token: "sesame", Version: "test"})
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/?token=sesame"), waitText("#node_id", a.ID()), waitText("#live", "live")); err != nil {
			t.Fatalf("status page with ?token: %v", err)
		}
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), waitText("body", "Missing or wrong API token")); err != nil {
			t.Fatalf("status page without the token: %v", err)
		}
	})

	t.Run("loopback dev page and sandboxed iframe", func(t *testing.T) {
		if m := must(do(t, api, call{path: "/p2p/open/web/self"})); m["error"] != 0.0 {
			t.Fatalf("open: %v", m)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dev := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, devPage)
		})}
		go dev.Serve(ln)
		defer dev.Close()
		// The dev page uses "localhost" while the API is on 127.0.0.1: a
		// cross-site CORS request, as from a dev server on localhost:8000.
		devURL := "http://localhost:" + portOf(ln.Addr()) + "/?api=" + url.QueryEscape(api)
		if err := chromedp.Do(ctx, chromedp.Navigate(devURL),
			chromedp.Poll[chromedp.Void](`window.results && window.results.done && Object.keys(window.results).filter(k => k.startsWith("sandboxed")).length == 4`,
				chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			t.Fatalf("dev page: %v", err)
		}
		results, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`window.results`))
		if err != nil {
			t.Fatal(err)
		}
		for key, want := range map[string]string{"sub": `"error": 0`, "push": `"sent": 9`, "pull": "pong", "unsub": `"unsub"`} {
			if !strings.Contains(results[key], want) {
				t.Errorf("%s from a loopback origin: %q, want %q", key, results[key], want)
			}
		}
		for key, got := range results {
			if strings.HasPrefix(key, "sandboxed") && !strings.HasPrefix(got, "blocked") {
				t.Errorf("%s: a null-origin frame read %q", key, got)
			}
		}
		if m := must(do(t, api, call{path: "/p2p/con/evil"})); m["error"] != float64(errNotFound) {
			t.Errorf("the sandboxed frame opened a connection: %v", m)
		}
	})
}

// waitText waits until the element's text contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](fmt.Sprintf(`(document.querySelector(%q)?.textContent || "").includes(%q)`, sel, want),
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}
