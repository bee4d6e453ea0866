package stun

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	lo1 = netip.MustParseAddr("127.0.0.1")
	lo2 = netip.MustParseAddr("127.0.0.2")
	lo6 = netip.MustParseAddr("::1")
)

// startServer starts a server on random free high ports (the primary and
// alternate port must be equal on both IPs, so port 0 cannot be used).
func startServer(t testing.TB, cfg ServerConfig) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Metrics = NewMetrics()
	if err := cfg.Metrics.Register(reg); err != nil {
		t.Fatal(err)
	}
	if cfg.Sockets == 0 {
		cfg.Sockets = 2
	}
	var lastErr error
	for range 50 {
		p := uint16(20000 + rand.IntN(12000))
		c := cfg
		c.Port, c.AltPort = p, p+1
		s, err := Listen(c)
		if err == nil {
			t.Cleanup(func() { _ = s.Close() })
			return s, reg
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("start server: %v", lastErr)
	return nil, nil
}

func newConn(t testing.TB, network, local string) *Conn {
	t.Helper()
	pc, err := net.ListenPacket(network, local)
	if err != nil {
		t.Fatal(err)
	}
	// A long RTO: tests that count requests must not see retransmissions.
	c := NewConn(pc, time.Second)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func has6(t testing.TB) {
	t.Helper()
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	_ = c.Close()
}
