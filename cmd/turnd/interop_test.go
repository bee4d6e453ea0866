package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testbin"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

// buildTurnd compiles this command into a temporary directory.
func buildTurnd(t *testing.T) string { return testbin.Build(t, "cmd/turnd") }

// freePort returns a port free for both UDP and TCP on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// startProc starts a program whose output goes to a buffer shown on failure;
// it is killed at cleanup.
func startProc(t *testing.T, env []string, name string, args ...string) (*exec.Cmd, *syncBuf) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out.String())
		}
	})
	return cmd, out
}

// waitTCP waits until addr accepts TCP connections (bounded; not a timing assertion).
func waitTCP(t *testing.T, addr string) {
	t.Helper()
	for range 200 {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never came up", addr)
}

type turndProc struct {
	cmd         *exec.Cmd
	out         *syncBuf
	port, admin int
}

func startTurnd(t *testing.T, bin string, extra ...string) *turndProc {
	t.Helper()
	p := &turndProc{port: freePort(t), admin: freePort(t)}
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice:alice-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lo := 10000 + rand.IntN(20000)
	args := append([]string{
		"--listen", "127.0.0.1", "--port", strconv.Itoa(p.port), "--admin", fmt.Sprintf("127.0.0.1:%d", p.admin),
		"--relay-bind", "127.0.0.1", "--relay-ip", "127.0.0.1",
		"--relay-min-port", strconv.Itoa(lo), "--relay-max-port", strconv.Itoa(lo + 2000),
		"--users-file", users, "--realm", "interop",
	}, extra...)
	// The REST secret comes from the environment, as an operator should pass it.
	p.cmd, p.out = startProc(t, []string{"TURND_AUTH_SECRET=rest-secret"}, bin, args...)
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", p.port))
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", p.admin))
	return p
}

var totals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$`)

// uclientTotals runs turnutils_uclient and returns its sent and received message totals.
func uclientTotals(t *testing.T, args ...string) (int, int, string) {
	t.Helper()
	out, err := exec.Command("turnutils_uclient", args...).CombinedOutput()
	if err != nil {
		return -1, -1, fmt.Sprintf("turnutils_uclient: %v\n%s", err, out)
	}
	sent, recv := -1, -1
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := totals.FindStringSubmatch(sc.Text()); m != nil {
			sent, _ = strconv.Atoi(m[1])
			recv, _ = strconv.Atoi(m[2])
		}
	}
	return sent, recv, string(out)
}

func TestUclientInterop(t *testing.T) {
	testenv.RequireTools(t, "turnutils_uclient", "turnutils_peer")
	bin := buildTurnd(t)
	// The loopback echo peer is reachable only because --allow-peer opens it.
	srv := startTurnd(t, bin, "--allow-peer", "127.0.0.0/8")
	peerPort := freePort(t)
	startProc(t, nil, "turnutils_peer", "-L", "127.0.0.1", "-p", strconv.Itoa(peerPort))
	const clients, msgs = 2, 20
	t.Run("matrix", func(t *testing.T) { uclientMatrix(t, srv.port, peerPort, clients, msgs) })
	t.Run("metrics", func(t *testing.T) {
		body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", srv.admin))
		for _, want := range []string{`turnd_relayed_packets_total{direction="to_peer"}`, `turnd_relayed_packets_total{direction="to_client"}`} {
			if v := metricValue(body, want); v < 8*clients*msgs*9/10 {
				t.Errorf("%s = %v, want >= %d", want, v, 8*clients*msgs*9/10)
			}
		}
		if v := metricValue(body, "turnd_allocations_created_total"); v < 8*clients {
			t.Errorf("turnd_allocations_created_total = %v, want >= %d", v, 8*clients)
		}
	})
	t.Run("wrong password refused", func(t *testing.T) {
		_, recv, out := uclientTotals(t, "-e", "127.0.0.1", "-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(srv.port),
			"-n", "3", "-c", "-u", "alice", "-w", "wrong", "127.0.0.1")
		// On 401 uclient retries with the fresh nonce, then gives up; 400
		// would make it stop at once with "error 400".
		if recv > 0 || strings.Contains(out, "error 400") || !strings.Contains(out, "Cannot complete Allocation") {
			t.Fatalf("uclient with a wrong password was not refused with 401:\n%s", out)
		}
		body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", srv.admin))
		if v := metricValue(body, `turnd_auth_failures_total{reason="bad_integrity"}`); v < 2 {
			t.Errorf("auth failures{bad_integrity} = %v, want the first try and the retry", v)
		}
	})
	t.Run("IPv6 relay refused with 440", func(t *testing.T) {
		// uclient asks for an IPv6 relay (REQUESTED-ADDRESS-FAMILY 2) when
		// the peer it is given is IPv6.
		_, recv, out := uclientTotals(t, "-e", "::1", "-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(srv.port),
			"-n", "3", "-c", "-x", "-u", "alice", "-w", "alice-pw", "127.0.0.1")
		if recv > 0 || !strings.Contains(out, "error 440") {
			t.Fatalf("uclient asking for an IPv6 relay was not refused with 440:\n%s", out)
		}
	})
}

// uclientMatrix runs uclient over UDP and TCP, with static and REST
// credentials, in channel and send-indication modes, in parallel.
func uclientMatrix(t *testing.T, port, peerPort, clients, msgs int) {
	for _, transport := range []string{"udp", "tcp"} {
		for _, cred := range []string{"static", "rest"} {
			for _, mode := range []string{"channel", "send"} {
				t.Run(transport+"/"+cred+"/"+mode, func(t *testing.T) {
					t.Parallel()
					args := []string{"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(port),
						"-n", strconv.Itoa(msgs), "-m", strconv.Itoa(clients), "-c", "-z", "5"}
					if transport == "tcp" {
						args = append(args, "-t")
					}
					if mode == "send" {
						args = append(args, "-s")
					}
					if cred == "static" {
						args = append(args, "-u", "alice", "-w", "alice-pw")
					} else {
						args = append(args, "-u", "bob", "-W", "rest-secret")
					}
					sent, recv, out := uclientTotals(t, append(args, "127.0.0.1")...)
					// Loopback UDP on a shared machine may drop a datagram or two.
					if sent != clients*msgs || recv < sent*9/10 {
						t.Fatalf("sent %d received %d, want %d and (nearly) all back\n%s", sent, recv, clients*msgs, out)
					}
				})
			}
		}
	}
}

func TestSIGTERMDrains(t *testing.T) {
	testenv.RequireTools(t, "turnutils_uclient", "turnutils_peer")
	bin := buildTurnd(t)
	srv := startTurnd(t, bin, "--allow-peer", "127.0.0.0/8", "--drain", "1h")
	peerPort := freePort(t)
	startProc(t, nil, "turnutils_peer", "-L", "127.0.0.1", "-p", strconv.Itoa(peerPort))
	// uclient leaves its allocation behind when it exits, so the drain has one to wait for.
	if _, recv, out := uclientTotals(t, "-e", "127.0.0.1", "-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(srv.port),
		"-n", "5", "-c", "-u", "alice", "-w", "alice-pw", "127.0.0.1"); recv == 0 {
		t.Fatalf("no traffic relayed\n%s", out)
	}
	health := fmt.Sprintf("http://127.0.0.1:%d/healthz", srv.admin)
	if code := httpStatus(t, health); code != http.StatusOK {
		t.Fatalf("/healthz before SIGTERM = %d", code)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Draining: still up (the allocation is kept), /healthz says 503.
	deadline := time.Now().Add(30 * time.Second)
	for httpStatus(t, health) != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/healthz never reported draining")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// /healthz turns 503 the moment the drain starts, just before the log
	// line is written.
	for !strings.Contains(srv.out.String(), "draining") {
		if time.Now().After(deadline) {
			t.Fatal("no draining log line")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A second signal ends the drain at once.
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("turnd exit: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("turnd did not exit after the second SIGTERM")
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		return 0
	}
	_ = res.Body.Close()
	return res.StatusCode
}

func metricValue(body, series string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, series+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(l, series)), 64)
			return v
		}
	}
	return -1
}
