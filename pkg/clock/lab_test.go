package clock

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testbin"
	"github.com/p2pd-go/p2pd/internal/testenv"
	"github.com/p2pd-go/p2pd/pkg/natlab"
)

// startChrony runs chronyd as an NTP server on a lab WAN host: serving its
// own clock (local stratum 3, never touching the system clock: -x), no
// command socket, no sources. Every lab namespace shares the wall clock, so
// the true offset of any lab client is 0.
func startChrony(t *testing.T, h *natlab.Host) {
	t.Helper()
	bin := testenv.RequireTools(t, "chronyd")[0]
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // chronyd drops to its own user
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`bindaddress %s
port 123
allow all
local stratum 3
cmdport 0
pidfile %s
`, h.IP4(), filepath.Join(dir, "chronyd.pid"))
	path := filepath.Join(dir, "chrony.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	h.Start(t, bin, "-d", "-x", "-f", path)
}

// syncUntilNTP syncs until a sync ends with source ntp (a server just
// started may not answer yet, or answer "unsynchronised" for a moment).
func syncUntilNTP(t *testing.T, c *Clock) Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _ := c.Sync(context.Background())
		if st.Source == SourceNTP {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("no NTP answer from the lab server: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestLabChrony queries chrony (Debian) from a host behind a NAT in the lab,
// with the local clock true and skewed by several seconds either way.
func TestLabChrony(t *testing.T) {
	lab := natlab.New(t)
	srv := lab.AddServer("chrony")
	startChrony(t, srv)
	client := lab.AddRouter("nat", natlab.PortRestrictedCone).AddHost("client")
	for _, skew := range []time.Duration{0, 6 * time.Second, -8 * time.Second} {
		t.Run(skew.String(), func(t *testing.T) {
			var local skewed
			local.set(skew)
			c, err := New(Config{Servers: []string{srv.IP4().String()}, Net: client.Net(), Now: local.now})
			if err != nil {
				t.Fatal(err)
			}
			st := syncUntilNTP(t, c)
			t.Logf("chrony: %+v", st)
			if e := abs(st.Offset + skew); e > few || e > st.Uncertainty {
				t.Errorf("offset %s for skew %s: error %s (uncertainty %s)", st.Offset, skew, e, st.Uncertainty)
			}
			if e := abs(time.Until(c.Now())); e > few {
				t.Errorf("corrected clock is %s off the real one", e)
			}
		})
	}
}

// TestLabStundDefault runs the stund binary with --ntp on a lab WAN host and
// a clock configured only with the STUN server list (the default: SNTP on
// the STUN hosts, port 123), from behind a symmetric NAT.
func TestLabStundDefault(t *testing.T) {
	lab := natlab.New(t)
	addrs := lab.AllocWAN(1, 0)
	h := lab.AddServer("stund", addrs...)
	h.Start(t, testbin.Build(t, "cmd/stund"), "--primary-ip4", addrs[0].String(), "--ntp",
		"--admin", "", "--log-level", "warn")
	client := lab.AddRouter("nat", natlab.Symmetric).AddHost("client")
	var local skewed
	local.set(-4 * time.Second)
	c, err := New(Config{STUNServers: []netip.AddrPort{netip.AddrPortFrom(addrs[0], 3478)}, Net: client.Net(), Now: local.now})
	if err != nil {
		t.Fatal(err)
	}
	st := syncUntilNTP(t, c)
	if e := abs(st.Offset - 4*time.Second); e > few || e > st.Uncertainty {
		t.Errorf("offset %s for skew -4s: error %s (uncertainty %s)", st.Offset, e, st.Uncertainty)
	}
}
