package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd-go/p2pd/internal/testbin"
)

const (
	testUser = "alice"
	testPass = "alice-pw"
)

// lockedBuf collects a process's output for the failure log.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// loopPort returns a port free for UDP and TCP on 127.0.0.1.
func loopPort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// turnd is our TURN server run as a process on loopback.
type turnd struct {
	t                    testing.TB
	bin                  string
	args                 []string
	port, tlsPort, admin int
	cmd                  *exec.Cmd
	out                  *lockedBuf
}

// startTurnd runs turnd on 127.0.0.1 (UDP, TCP and, with a certificate,
// TLS). Loopback peers are refused by its policy, so the test opens
// 127.0.0.1 with --allow-peer.
func startTurnd(t testing.TB, extra ...string) *turnd {
	t.Helper()
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte(testUser+":"+testPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &turnd{t: t, bin: testbin.Build(t, "cmd/turnd"), port: loopPort(t), tlsPort: loopPort(t), admin: loopPort(t)}
	lo := 10000 + int(randUint16()%20000)
	d.args = append([]string{"--listen", "127.0.0.1", "--port", strconv.Itoa(d.port), "--tls-port", strconv.Itoa(d.tlsPort),
		"--admin", fmt.Sprintf("127.0.0.1:%d", d.admin), "--relay-bind", "127.0.0.1", "--relay-ip", "127.0.0.1",
		"--relay-min-port", strconv.Itoa(lo), "--relay-max-port", strconv.Itoa(lo + 1000),
		"--users-file", users, "--realm", "relaytest", "--allow-peer", "127.0.0.1/32", "--drain", "0s"}, extra...)
	d.start()
	t.Cleanup(d.kill)
	return d
}

func randUint16() uint16 {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return uint16(b[0])<<8 | uint16(b[1])
}

func (d *turnd) start() {
	d.t.Helper()
	d.cmd = exec.Command(d.bin, d.args...)
	d.out = &lockedBuf{}
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	out := d.out
	d.t.Cleanup(func() {
		if d.t.Failed() {
			d.t.Logf("turnd output:\n%s", out.String())
		}
	})
	waitTCP(d.t, fmt.Sprintf("127.0.0.1:%d", d.port))
	waitTCP(d.t, fmt.Sprintf("127.0.0.1:%d", d.admin))
}

// kill ends the process at once (SIGKILL): no release, no drain.
func (d *turnd) kill() {
	if d.cmd != nil && d.cmd.ProcessState == nil {
		_ = d.cmd.Process.Kill()
		_ = d.cmd.Wait()
	}
}

func (d *turnd) server(transport string) Server {
	port := d.port
	if transport == TLS {
		port = d.tlsPort
	}
	return Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Transport: transport, ServerName: "127.0.0.1"}
}

// metric reads one series from turnd's /metrics (-1 when absent).
func (d *turnd) metric(series string) float64 {
	d.t.Helper()
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", d.admin))
	if err != nil {
		d.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return -1
}

// waitTCP waits (bounded) until addr accepts connections.
func waitTCP(t testing.TB, addr string) {
	t.Helper()
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never came up", addr)
}

// eventually polls cond (bounded) and fails with what if it never holds.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newClient starts a Client and closes it at cleanup.
func newClient(t testing.TB, cfg Config) (*Client, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.Username == "" {
		cfg.Username, cfg.Password = testUser, testPass
	}
	cfg.Registry = reg
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return c, reg
}

// pair permits a and b for each other and opens a stream from a to b.
func pair(t testing.TB, a, b *Client) (net.Conn, net.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ra, ok := a.RelayAddr()
	rb, ok2 := b.RelayAddr()
	if !ok || !ok2 {
		t.Fatal("no relay address")
	}
	if err := a.Permit(ctx, rb); err != nil {
		t.Fatal(err)
	}
	if err := b.Permit(ctx, ra); err != nil {
		t.Fatal(err)
	}
	type res struct {
		c   net.Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := b.Accept(ctx)
		acc <- res{c, err}
	}()
	ca, err := a.Dial(ctx, rb)
	if err != nil {
		t.Fatal(err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { _, _ = ca.Close(), r.c.Close() })
	if ca.LocalAddr().String() != ra.String() || ca.RemoteAddr().String() != rb.String() ||
		r.c.LocalAddr().String() != rb.String() || r.c.RemoteAddr().String() != ra.String() {
		t.Fatalf("addresses: dialer %s->%s, acceptor %s->%s; relays %s, %s",
			ca.LocalAddr(), ca.RemoteAddr(), r.c.LocalAddr(), r.c.RemoteAddr(), ra, rb)
	}
	return ca, r.c
}

// sendMiB writes n random bytes on w and closes it; r must read exactly
// those bytes, in order, then EOF.
func sendAndCheck(t testing.TB, w, r net.Conn, n int) {
	t.Helper()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := w.Write(data)
		if err == nil {
			err = w.Close()
		}
		errc <- err
	}()
	_ = r.SetReadDeadline(time.Now().Add(2 * time.Minute))
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read after %d of %d bytes: %v", len(got), n, err)
	}
	if werr := <-errc; werr != nil {
		t.Fatalf("write: %v", werr)
	}
	if len(got) != n || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("received %d bytes (want %d), content intact: %v", len(got), n, bytes.Equal(got, data))
	}
}

func relayAddrOf(t testing.TB, c *Client) netip.AddrPort {
	t.Helper()
	a, ok := c.RelayAddr()
	if !ok {
		t.Fatal("no relay address")
	}
	return a
}
