package nat

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/stun"
)

var (
	lo1 = netip.MustParseAddr("127.0.0.1")
	lo2 = netip.MustParseAddr("127.0.0.2")
)

// startStund runs an in-process stund on lo1/lo2 at random free ports.
func startStund(t *testing.T, alt bool) netip.AddrPort {
	t.Helper()
	for range 50 {
		p := uint16(20000 + rand.IntN(12000))
		cfg := stun.ServerConfig{Primary4: lo1, Port: p, AltPort: p + 1, Sockets: 1, NoTCP: true}
		if alt {
			cfg.Alternate4 = lo2
		}
		s, err := stun.Listen(cfg)
		if err == nil {
			t.Cleanup(func() { _ = s.Close() })
			return netip.AddrPortFrom(lo1, p)
		}
		if !strings.Contains(err.Error(), "in use") {
			t.Fatal(err)
		}
	}
	t.Fatal("no free ports")
	return netip.AddrPort{}
}

func loopbackConfig(servers ...netip.AddrPort) Config {
	return Config{Servers: servers, Local: lo1, RTO: 20 * time.Millisecond, ReplyTimeout: 300 * time.Millisecond}
}

// wantOpen is the verdict on loopback: no NAT, no filter, ports kept.
func wantOpen(t *testing.T, r Result) {
	t.Helper()
	if r.Type != OpenInternet || r.Mapping != EndpointIndependent || r.Filtering != EndpointIndependent || r.Delta != (Delta{DeltaEqual, 0}) {
		t.Errorf("got type %v mapping %s filtering %s delta %+v; want open, EIM, EIF, equal", r.Type, r.Mapping, r.Filtering, r.Delta)
	}
	if r.External != r.Local {
		t.Errorf("external %s, local %s", r.External, r.Local)
	}
}

func TestProfileLoopback(t *testing.T) {
	srv := startStund(t, true)
	r, err := Profile(context.Background(), loopbackConfig(srv))
	if err != nil {
		t.Fatal(err)
	}
	wantOpen(t, r)
	if r.Alternate != netip.AddrPortFrom(lo2, srv.Port()+1) {
		t.Errorf("alternate %s", r.Alternate)
	}
}

func TestProfileSkipsDeadServer(t *testing.T) {
	srv := startStund(t, true)
	r, err := Profile(context.Background(), loopbackConfig(netip.MustParseAddrPort("127.0.0.1:9"), srv))
	if err != nil {
		t.Fatal(err)
	}
	if r.Server != srv {
		t.Errorf("used %s, want %s", r.Server, srv)
	}
	wantOpen(t, r)
}

func TestProfileNoAnswer(t *testing.T) {
	r, err := Profile(context.Background(), loopbackConfig(netip.MustParseAddrPort("127.0.0.1:9")))
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != BlockedNAT || r.Mapping != Unknown || r.Filtering != Unknown || r.Delta.Type != DeltaUnknown {
		t.Errorf("got %+v, want blocked and unknown", r)
	}
}

// TestProfileSingleIPServer: a server with one IP refuses change requests,
// so mapping and filtering stay unknown; the delta is still measured.
func TestProfileSingleIPServer(t *testing.T) {
	srv := startStund(t, false)
	r, err := Profile(context.Background(), loopbackConfig(srv))
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != OpenInternet || r.Mapping != Unknown || r.Filtering != Unknown || r.Delta.Type != DeltaEqual {
		t.Errorf("got %+v", r)
	}
}
