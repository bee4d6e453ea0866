package deploy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// lockedBuffer collects a process's output for the failure message.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs bin with args until the test ends and waits until its admin
// listener at admin answers /healthz.
func start(t *testing.T, bin, admin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // the process this test started, by its handle
		<-done
	})
	for range 300 {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("%s exited: %v\n%s", bin, err, out.String())
		default:
		}
		resp, err := http.Get("http://" + admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: no healthy /healthz at %s\n%s", bin, admin, out.String())
}

// freePort returns a port free for TCP and UDP on every given loopback IP.
func freePort(t *testing.T, ips ...string) int {
	t.Helper()
	if len(ips) == 0 {
		ips = []string{"127.0.0.1"}
	}
	for range 200 {
		p := 20000 + rand.IntN(12000)
		ok := true
		for _, ip := range ips {
			addr := net.JoinHostPort(ip, strconv.Itoa(p))
			l, err := net.Listen("tcp4", addr)
			if err != nil {
				ok = false
				break
			}
			l.Close()
			c, err := net.ListenPacket("udp4", addr)
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("deploy: no free port")
	return 0
}

func hostPort(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// apiGet calls a running agent's REST API and returns the body.
func apiGet(t *testing.T, api, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + api + path)
	if err != nil {
		t.Fatalf("agent API %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || bytes.Contains(b, []byte(`"error": 1`)) {
		t.Fatalf("agent API %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}
