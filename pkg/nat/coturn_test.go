package nat

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testenv"
	"github.com/p2pd-go/p2pd/pkg/stun"
)

// startCoturn runs Debian's turnserver as a STUN-only server on 127.0.0.1
// and 127.0.0.2 (two listening IPs enable its RFC 5780 support) at random
// free ports, and returns its primary address.
func startCoturn(t *testing.T) netip.AddrPort {
	t.Helper()
	bin := testenv.RequireTools(t, "turnserver")[0]
	for range 10 {
		p := 20000 + rand.IntN(12000)
		cmd := exec.Command(bin, "-n", "--listening-ip", "127.0.0.1", "--listening-ip", "127.0.0.2",
			"--listening-port", strconv.Itoa(p), "--alt-listening-port", strconv.Itoa(p+1),
			"--stun-only", "--no-tls", "--no-dtls", "--no-cli", "--log-file", "stdout", "--simple-log",
			"--pidfile", t.TempDir()+"/turnserver.pid")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		srv := netip.AddrPortFrom(lo1, uint16(p))
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Time{} // died (port taken?): try other ports
				continue
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			_, err := stun.ExternalAddr(ctx, stun.ExternalConfig{Local: netip.AddrPortFrom(lo1, 0), Servers: []netip.AddrPort{srv}, Timeout: 200 * time.Millisecond})
			cancel()
			if err == nil {
				t.Cleanup(stop)
				return srv
			}
		}
		stop()
	}
	t.Fatal("could not start turnserver")
	return netip.AddrPort{}
}

// TestProfileCoturnMatchesStund: our client must reach the same verdict
// against coturn as against stund (both on loopback: no NAT).
func TestProfileCoturnMatchesStund(t *testing.T) {
	coturn := startCoturn(t)
	ours := startStund(t, true)
	var got [2]Result
	for i, srv := range []netip.AddrPort{coturn, ours} {
		r, err := Profile(context.Background(), loopbackConfig(srv))
		if err != nil {
			t.Fatal(err)
		}
		got[i] = r
		t.Logf("%s: %+v", srv, r)
	}
	c, s := got[0], got[1]
	if c.Type != s.Type || c.Mapping != s.Mapping || c.Filtering != s.Filtering || c.Delta != s.Delta {
		t.Errorf("coturn verdict %v/%s/%s/%+v differs from stund's %v/%s/%s/%+v",
			c.Type, c.Mapping, c.Filtering, c.Delta, s.Type, s.Mapping, s.Filtering, s.Delta)
	}
	wantOpen(t, c)
	if c.Alternate.Addr() != lo2 {
		t.Errorf("coturn OTHER-ADDRESS %s", c.Alternate)
	}
	// Classic RFC 3489 requests too.
	for _, srv := range []netip.AddrPort{coturn, ours} {
		pcConn := newClassicConn(t)
		r, err := pcConn.Do(context.Background(), stun.Request{Server: srv, Classic: true, Change: stun.ChangeIP | stun.ChangePort})
		if err != nil {
			t.Fatalf("%s classic change request: %v", srv, err)
		}
		if r.Mapped != pcConn.LocalAddr() || r.From.Addr() != lo2 {
			t.Errorf("%s classic: mapped %s from %s", srv, r.Mapped, r.From)
		}
	}
}

func newClassicConn(t *testing.T) *stun.Conn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := stun.NewConn(pc, 20*time.Millisecond)
	t.Cleanup(func() { _ = c.Close() })
	return c
}
