package relay

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/p2pd-go/p2pd/internal/metricstest"
	"github.com/p2pd-go/p2pd/internal/testcert"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Servers: []Server{{Addr: "127.0.0.1:3478"}}, Username: "u", Password: "p"}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"valid", func(*Config) {}, ""},
		{"no servers", func(c *Config) { c.Servers = nil }, "no TURN servers"},
		{"no port", func(c *Config) { c.Servers = []Server{{Addr: "127.0.0.1"}} }, "127.0.0.1"},
		{"bad port", func(c *Config) { c.Servers = []Server{{Addr: "127.0.0.1:99999"}} }, "bad port"},
		{"no host", func(c *Config) { c.Servers = []Server{{Addr: ":3478"}} }, "no host"},
		{"bad transport", func(c *Config) { c.Servers = []Server{{Addr: "127.0.0.1:3478", Transport: "sctp"}} }, "sctp"},
		{"no password", func(c *Config) { c.Password = "" }, "password"},
		{"negative", func(c *Config) { c.KeepAlive = -time.Second }, "KeepAlive"},
		{"retry order", func(c *Config) { c.RetryMin, c.RetryMax = time.Minute, time.Second }, "RetryMax"},
		{"keepalive vs lifetime", func(c *Config) { c.KeepAlive, c.Lifetime = time.Hour, time.Minute }, "shorter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			_, err := New(c)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestServerAttempts(t *testing.T) {
	tests := []struct {
		s    Server
		want string
	}{
		{Server{Addr: "192.0.2.1:3478"}, "udp 192.0.2.1:3478,tcp 192.0.2.1:3478,tls 192.0.2.1:5349"},
		{Server{Addr: "192.0.2.1:5349"}, "udp 192.0.2.1:5349,tcp 192.0.2.1:5349,tls 192.0.2.1:5349"},
		{Server{Addr: "[2001:db8::1]:3478", Transport: TCP}, "tcp [2001:db8::1]:3478"},
	}
	for _, tc := range tests {
		t.Run(tc.s.Addr, func(t *testing.T) {
			var got []string
			for _, a := range tc.s.attempts() {
				got = append(got, a.transport+" "+a.addr)
			}
			if strings.Join(got, ",") != tc.want {
				t.Fatalf("attempts = %v, want %s", got, tc.want)
			}
		})
	}
}

// TestStreamOverTurnd moves 1 MiB each way between two clients of our turnd,
// over each transport to the server.
func TestStreamOverTurnd(t *testing.T) {
	cert := testcert.New(t, "127.0.0.1")
	d := startTurnd(t, "--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile)
	tlsConf := &tls.Config{RootCAs: cert.Pool}
	for _, transport := range []string{UDP, TCP, TLS} {
		t.Run(transport, func(t *testing.T) {
			cfg := Config{Servers: []Server{d.server(transport)}, TLS: tlsConf}
			a, regA := newClient(t, cfg)
			b, _ := newClient(t, cfg)
			if a.Transport() != transport {
				t.Fatalf("Transport() = %q, want %q", a.Transport(), transport)
			}
			ca, cb := pair(t, a, b)
			sendAndCheck(t, ca, cb, 1<<20)
			ca2, cb2 := pair(t, b, a)
			sendAndCheck(t, ca2, cb2, 1<<20)
			if v := testutil.ToFloat64(a.m.bytes.WithLabelValues("out")); v < 1<<20 {
				t.Errorf("agent_relay_bytes_total{dir=out} = %v, want >= 1 MiB", v)
			}
			metricstest.Lint(t, regA, "agent")
		})
	}
}

// TestUDPUnansweredFallsBackToTCP: a server without UDP (as a network that
// drops UDP looks) is reached over TCP, and Start's error is not needed.
func TestUDPUnansweredFallsBackToTCP(t *testing.T) {
	d := startTurnd(t, "--no-udp")
	cfg := Config{Servers: []Server{{Addr: d.server(UDP).Addr}}, DialTimeout: time.Second}
	a, _ := newClient(t, cfg)
	b, _ := newClient(t, cfg)
	if a.Transport() != TCP {
		t.Fatalf("Transport() = %q, want tcp", a.Transport())
	}
	ca, cb := pair(t, a, b)
	sendAndCheck(t, ca, cb, 256<<10)
}

// TestStartNamesEveryServer: with nothing to allocate on, Start fails with
// an error naming each server and transport tried, and keeps retrying: a
// server that comes up later is used.
func TestStartNamesEveryServer(t *testing.T) {
	p1, p2 := loopPort(t), loopPort(t)
	s1 := Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p1)), Transport: TCP}
	s2 := Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p2)), Transport: UDP}
	c, err := New(Config{Servers: []Server{s1, s2}, Username: testUser, Password: testPass,
		DialTimeout: 500 * time.Millisecond, RetryMin: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Start(context.Background())
	if err == nil {
		t.Fatal("Start succeeded with no server")
	}
	for _, want := range []string{s1.Addr + " over tcp", s2.Addr + " over udp", "refused", "no answer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error %q does not mention %q", err, want)
		}
	}
	if _, err := c.Dial(context.Background(), netip.MustParseAddrPort("127.0.0.1:1")); !errors.Is(err, ErrNoAllocation) {
		t.Errorf("Dial without allocation: %v, want ErrNoAllocation", err)
	}
}

// TestRestartBreaksPipeAndReallocates kills turnd mid-stream and starts it
// again: the stream fails naming the lost allocation, the client allocates
// again by itself, and a new stream works.
func TestRestartBreaksPipeAndReallocates(t *testing.T) {
	d := startTurnd(t)
	for _, transport := range []string{UDP, TCP} {
		t.Run(transport, func(t *testing.T) {
			cfg := Config{Servers: []Server{d.server(transport)}, KeepAlive: 300 * time.Millisecond,
				RetryMin: 100 * time.Millisecond, RetryMax: 500 * time.Millisecond}
			a, regA := newClient(t, cfg)
			b, _ := newClient(t, cfg)
			ca, cb := pair(t, a, b)
			if _, err := ca.Write([]byte("before")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 6)
			if _, err := io.ReadFull(cb, buf); err != nil {
				t.Fatal(err)
			}
			changed := a.Changed()
			d.kill()
			d.start()
			_ = cb.SetReadDeadline(time.Now().Add(time.Minute))
			_, err := cb.Read(buf)
			if !errors.Is(err, ErrAllocationLost) {
				t.Fatalf("read on a stream whose allocation died: %v, want ErrAllocationLost", err)
			}
			if !strings.Contains(err.Error(), d.server(transport).Addr) {
				t.Errorf("error %q does not name the server", err)
			}
			if _, err := ca.Write(buf); err == nil {
				// The write may be buffered before the loss is seen; a
				// second one after the loss must fail.
				eventually(t, time.Minute, "write fails", func() bool { _, err := ca.Write(buf); return err != nil })
			}
			<-changed
			eventually(t, time.Minute, "both re-allocated", func() bool {
				_, okA := a.RelayAddr()
				_, okB := b.RelayAddr()
				return okA && okB
			})
			ca2, cb2 := pair(t, a, b)
			sendAndCheck(t, ca2, cb2, 64<<10)
			if v := testutil.ToFloat64(a.m.reallocations); v < 1 {
				t.Errorf("agent_relay_reallocations_total = %v, want >= 1", v)
			}
			metricstest.Lint(t, regA, "agent")
		})
	}
}

// TestCloseReleases: Close gives the allocation back at once (turnd's
// allocation gauge drops), and the client's own gauge goes to 0.
func TestCloseReleases(t *testing.T) {
	d := startTurnd(t)
	a, _ := newClient(t, Config{Servers: []Server{d.server(UDP)}})
	b, _ := newClient(t, Config{Servers: []Server{d.server(TCP)}})
	_ = b
	if v := d.metric("turnd_allocations_active"); v != 2 {
		t.Fatalf("turnd_allocations_active = %v, want 2", v)
	}
	if testutil.ToFloat64(a.m.active) != 1 {
		t.Fatal("agent_relay_allocation_active is not 1")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "turnd_allocations_active drops to 1", func() bool { return d.metric("turnd_allocations_active") == 1 })
	if testutil.ToFloat64(a.m.active) != 0 {
		t.Error("agent_relay_allocation_active is not 0 after Close")
	}
	if _, ok := a.RelayAddr(); ok {
		t.Error("RelayAddr after Close")
	}
	if _, err := a.Accept(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Accept after Close: %v, want ErrClosed", err)
	}
}

// TestOversizeDatagramDropped: a permitted peer sending a datagram larger
// than any QUIC packet must not kill the QUIC transport (pion reports it as
// io.ErrShortBuffer): it is dropped and counted, and streams keep working.
func TestOversizeDatagramDropped(t *testing.T) {
	d := startTurnd(t)
	a, _ := newClient(t, Config{Servers: []Server{d.server(UDP)}})
	b, _ := newClient(t, Config{Servers: []Server{d.server(UDP)}})

	// A plain pion client as the misbehaving peer.
	sock, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	tc, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: d.server(UDP).Addr, TURNServerAddr: d.server(UDP).Addr,
		Username: testUser, Password: testPass, Conn: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.Listen(); err != nil {
		t.Fatal(err)
	}
	raw, err := tc.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rawAddr := raw.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := a.Permit(ctx, rawAddr); err != nil {
		t.Fatal(err)
	}
	target := net.UDPAddrFromAddrPort(relayAddrOf(t, a))
	// Larger than quic-go's 1452-byte read buffer, small enough for the
	// server's 1500-byte one once pion's channel binding is up (ChannelData
	// adds 4 bytes; the first Send indications are too big and are lost).
	big := make([]byte, 1480)
	eventually(t, 30*time.Second, "an oversize datagram is counted", func() bool {
		if _, err := raw.WriteTo(big, target); err != nil {
			t.Fatal(err)
		}
		return testutil.ToFloat64(a.m.dropped.WithLabelValues("oversize")) > 0
	})
	ca, cb := pair(t, b, a)
	sendAndCheck(t, ca, cb, 64<<10)
}

// TestConnSemantics: deadlines time out as net.Errors, Close ends the
// peer's reads with EOF, our own reads and writes after Close fail with
// net.ErrClosed, and a Dial to a peer that never permitted us fails naming
// the likely cause.
func TestConnSemantics(t *testing.T) {
	d := startTurnd(t)
	a, _ := newClient(t, Config{Servers: []Server{d.server(UDP)}, IdleTimeout: 3 * time.Second})
	b, _ := newClient(t, Config{Servers: []Server{d.server(UDP)}})
	ca, cb := pair(t, a, b)

	_ = cb.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var ne net.Error
	if _, err := cb.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	_ = cb.SetReadDeadline(time.Time{})
	if _, err := ca.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := ca.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(cb)
	if err != nil || string(got) != "x" {
		t.Fatalf("peer read after Close: %q, %v; want \"x\" then EOF", got, err)
	}
	if _, err := ca.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := ca.Write([]byte("y")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v, want net.ErrClosed", err)
	}

	for _, bad := range []netip.AddrPort{{}, netip.MustParseAddrPort("127.0.0.1:0")} {
		if _, err := a.Dial(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "not a transport address") {
			t.Errorf("Dial(%v): %v, want a refusal", bad, err)
		}
		if err := a.Permit(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "not a transport address") {
			t.Errorf("Permit(%v): %v, want a refusal", bad, err)
		}
	}

	// A client that permitted nobody: our packets never reach it.
	c, _ := newClient(t, Config{Servers: []Server{d.server(UDP)}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := a.Dial(ctx, relayAddrOf(t, c)); err == nil || !strings.Contains(err.Error(), "permitted") {
		t.Fatalf("dial to a peer that did not permit us: %v, want a hint at the permission", err)
	}
}

// TestCredentials: an operator-issued TURN REST credential goes in the same
// fields as a static one; a wrong password fails Start with the server's
// answer.
func TestCredentials(t *testing.T) {
	d := startTurnd(t, "--auth-secret", "rest-secret")
	user := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + ":bob"
	mac := hmac.New(sha1.New, []byte("rest-secret"))
	mac.Write([]byte(user))
	a, _ := newClient(t, Config{Servers: []Server{d.server(UDP)}, Username: user, Password: base64.StdEncoding.EncodeToString(mac.Sum(nil))})
	b, _ := newClient(t, Config{Servers: []Server{d.server(UDP)}})
	ca, cb := pair(t, a, b)
	sendAndCheck(t, ca, cb, 64<<10)

	c, err := New(Config{Servers: []Server{d.server(UDP)}, Username: testUser, Password: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "error 401") {
		t.Fatalf("Start with a wrong password: %v, want the server's 401", err)
	}
}

// TestCloseLeavesNoGoroutines: after Close of both clients (with a stream
// still open on each) nothing of theirs keeps running.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	d := startTurnd(t)
	base := runtime.NumGoroutine()
	for _, transport := range []string{UDP, TCP} {
		var cs []*Client
		for range 2 {
			c, err := New(Config{Servers: []Server{d.server(transport)}, Username: testUser, Password: testPass})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		ca, cb := pair(t, cs[0], cs[1])
		sendAndCheck(t, ca, cb, 64<<10)
		for _, c := range cs {
			_ = c.Close()
		}
	}
	eventually(t, 30*time.Second, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base })
}
