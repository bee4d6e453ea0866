package relay

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

// TestStreamOverCoturn runs the client against a third-party server,
// coturn's turnserver, on loopback over UDP and TCP.
func TestStreamOverCoturn(t *testing.T) {
	bin := testenv.RequireTools(t, "turnserver")[0]
	port := loopPort(t)
	lo := 10000 + int(randUint16()%20000)
	dir := t.TempDir()
	cmd := exec.Command(bin, "-n", "--listening-ip", "127.0.0.1", "--listening-port", strconv.Itoa(port),
		"--relay-ip", "127.0.0.1", "--min-port", strconv.Itoa(lo), "--max-port", strconv.Itoa(lo+1000),
		"--lt-cred-mech", "--user", testUser+":"+testPass, "--realm", "relaytest",
		// coturn refuses loopback peers unless told, and then only listed ones.
		"--allow-loopback-peers", "--allowed-peer-ip", "127.0.0.1",
		"--no-tls", "--no-dtls", "--no-cli", "--log-file", "stdout", "--simple-log",
		"--pidfile", filepath.Join(dir, "turnserver.pid"), "--db", filepath.Join(dir, "turndb"))
	out := &lockedBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("turnserver output:\n%s", out.String())
		}
	})
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", port))
	for _, transport := range []string{UDP, TCP} {
		t.Run(transport, func(t *testing.T) {
			cfg := Config{Servers: []Server{{Addr: fmt.Sprintf("127.0.0.1:%d", port), Transport: transport}},
				KeepAlive: time.Second}
			a, _ := newClient(t, cfg)
			b, _ := newClient(t, cfg)
			ca, cb := pair(t, a, b)
			sendAndCheck(t, ca, cb, 1<<20)
			// Our own refreshes (coturn's nonces, its answers) keep the allocation.
			eventually(t, time.Minute, "two refreshes", func() bool {
				return testutil.ToFloat64(a.m.refreshes.WithLabelValues("ok")) >= 2
			})
			if n := testutil.ToFloat64(a.m.refreshes.WithLabelValues("error")) + testutil.ToFloat64(a.m.losses); n != 0 {
				t.Fatalf("refresh errors or losses on coturn: %v (%v)", n, a.lastErr)
			}
		})
	}
}
