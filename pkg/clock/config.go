package clock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd-go/p2pd/internal/sock"
)

// Defaults of Config.
const (
	DefaultNTPPort  = 123
	DefaultSamples  = 4
	DefaultTimeout  = time.Second
	DefaultInterval = 10 * time.Minute
	DefaultRetry    = 30 * time.Second
	DefaultUnsynced = time.Second
	MaxSamples      = 16
	maxServers      = 16
	driftPPM        = 15 // RFC 5905 PHI: assumed worst-case local drift, parts per million
)

// Config configures a Clock. The zero value of every field has the default
// written beside it; New checks the rest.
type Config struct {
	// Servers are NTP or SNTP servers as "host", "host:port", "IP",
	// "IP:port" or "[IPv6]:port" (port 123 when none is given). Empty: the
	// hosts of STUNServers on port 123, i.e. the SNTP that stund --ntp
	// answers on the private stack's STUN servers. At most 16.
	Servers []string
	// STUNServers are used only when Servers is empty (see there); the
	// agent passes its own STUN server list.
	STUNServers []netip.AddrPort
	// Samples is the number of queries per server in one sync (0: 4, at
	// most 16). The valid reply with the lowest round-trip time is kept.
	Samples int
	// Timeout bounds each query (0: 1 s).
	Timeout time.Duration
	// Interval is the time between syncs in Run (0: 10 min).
	Interval time.Duration
	// Retry is the time to the next sync after one in which no NTP server
	// answered (0: 30 s; never more than Interval).
	Retry time.Duration
	// RTT, when set, measures the round trip of an exchange over
	// signalling. It is the fallback when no NTP server answers: offset 0
	// with uncertainty RTT/2 (source "signalling-rtt"). Nil: no fallback.
	RTT func(ctx context.Context) (time.Duration, error)
	// Unsynced is the uncertainty reported while there is no time source at
	// all (source "none"; 0: 1 s).
	Unsynced time.Duration
	// Net creates the UDP sockets (nil: sock.Host); a NAT-lab host's Net
	// runs the client inside the lab.
	Net sock.Net
	// Now is the local clock (nil: time.Now). Tests inject a skewed clock.
	Now func() time.Time
	// Registry receives the metrics (nil: not registered).
	Registry prometheus.Registerer
	// Log receives sync results (nil: discarded).
	Log *slog.Logger
}

// withDefaults returns cfg with zero fields set to their defaults, or an
// error naming the first bad field.
func (cfg Config) withDefaults() (Config, error) {
	if err := cfg.validate(); err != nil {
		return cfg, err
	}
	if len(cfg.Servers) == 0 {
		cfg.Servers = ServersFromSTUN(cfg.STUNServers)
	}
	norm := make([]string, len(cfg.Servers))
	for i, s := range cfg.Servers {
		norm[i], _ = normalize(s) // checked by validate
	}
	cfg.Servers = norm
	if cfg.Samples == 0 {
		cfg.Samples = DefaultSamples
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Retry == 0 {
		cfg.Retry = DefaultRetry
	}
	cfg.Retry = min(cfg.Retry, cfg.Interval)
	if cfg.Unsynced == 0 {
		cfg.Unsynced = DefaultUnsynced
	}
	if cfg.Net == nil {
		cfg.Net = sock.Host
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

func (cfg Config) validate() error {
	if len(cfg.Servers) > maxServers {
		return fmt.Errorf("clock: %d servers, at most %d", len(cfg.Servers), maxServers)
	}
	for _, s := range cfg.Servers {
		if _, err := normalize(s); err != nil {
			return err
		}
	}
	if len(cfg.Servers) == 0 {
		for _, s := range cfg.STUNServers {
			if !s.IsValid() {
				return errors.New("clock: invalid STUN server address")
			}
		}
		if len(cfg.STUNServers) == 0 && cfg.RTT == nil {
			return errors.New("clock: no time source: set Servers, STUNServers or RTT")
		}
	}
	if cfg.Samples < 0 || cfg.Samples > MaxSamples {
		return fmt.Errorf("clock: samples %d out of range 1-%d", cfg.Samples, MaxSamples)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", cfg.Timeout}, {"interval", cfg.Interval}, {"retry", cfg.Retry}, {"unsynced", cfg.Unsynced}} {
		if d.v < 0 {
			return fmt.Errorf("clock: %s %s is negative", d.name, d.v)
		}
	}
	return nil
}

// ServersFromSTUN lists the NTP servers of a private stack: each distinct
// STUN server host on port 123, where stund --ntp answers SNTP.
func ServersFromSTUN(stun []netip.AddrPort) []string {
	var out []string
	seen := map[netip.Addr]bool{}
	for _, s := range stun {
		a := s.Addr().Unmap()
		if seen[a] || len(out) == maxServers {
			continue
		}
		seen[a] = true
		out = append(out, netip.AddrPortFrom(a, DefaultNTPPort).String())
	}
	return out
}

// normalize turns a server spec into "host:port" with port 123 when none
// is given.
func normalize(s string) (string, error) {
	if s == "" {
		return "", errors.New("clock: empty server address")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, DefaultNTPPort).String(), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.ContainsAny(s, ":[]") {
			return "", fmt.Errorf("clock: server %q: %w", s, err)
		}
		host, port = s, strconv.Itoa(DefaultNTPPort) // a host name without port
	}
	if host == "" {
		return "", fmt.Errorf("clock: server %q: no host", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("clock: server %q: port must be 1-65535", s)
	}
	return net.JoinHostPort(host, port), nil
}
