package clock

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd-go/p2pd/internal/metricstest"
)

// few is "within a few ms of truth" for loopback: all test clocks derive
// from the one wall clock, so the true offset is exactly the injected skew.
const few = 10 * time.Millisecond

func TestConfigValidate(t *testing.T) {
	rtt := func(context.Context) (time.Duration, error) { return 0, nil }
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string // "" = valid
	}{
		{"servers", Config{Servers: []string{"127.0.0.1", "ntp.example:123", "[::1]:1234", "::1", "host"}}, ""},
		{"stun hosts", Config{STUNServers: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:3478")}}, ""},
		{"rtt only", Config{RTT: rtt}, ""},
		{"nothing", Config{}, "no time source"},
		{"empty server", Config{Servers: []string{""}}, "empty server"},
		{"bad port", Config{Servers: []string{"127.0.0.1:0"}}, "port must be 1-65535"},
		{"port text", Config{Servers: []string{"host:ntp"}}, "port must be 1-65535"},
		{"no host", Config{Servers: []string{":123"}}, "no host"},
		{"bad brackets", Config{Servers: []string{"[::1"}}, "clock: server"},
		{"invalid stun", Config{STUNServers: []netip.AddrPort{{}}}, "invalid STUN server"},
		{"samples", Config{RTT: rtt, Samples: 17}, "samples 17"},
		{"negative samples", Config{RTT: rtt, Samples: -1}, "samples -1"},
		{"negative timeout", Config{RTT: rtt, Timeout: -time.Second}, "timeout -1s is negative"},
		{"negative interval", Config{RTT: rtt, Interval: -1}, "interval"},
		{"too many", Config{Servers: strings.Split(strings.Repeat("h,", 17)[:33], ",")}, "17 servers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "clock: ") {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := New(Config{STUNServers: []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:3478"), netip.MustParseAddrPort("192.0.2.1:3479"),
		netip.MustParseAddrPort("[::ffff:198.51.100.7]:3478"), netip.MustParseAddrPort("[2001:db8::1]:3478")}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.1:123", "198.51.100.7:123", "[2001:db8::1]:123"}
	if strings.Join(c.cfg.Servers, " ") != strings.Join(want, " ") {
		t.Errorf("servers from STUN hosts: %v, want %v", c.cfg.Servers, want)
	}
	if c.cfg.Samples != DefaultSamples || c.cfg.Timeout != DefaultTimeout || c.cfg.Interval != DefaultInterval ||
		c.cfg.Retry != DefaultRetry || c.cfg.Unsynced != DefaultUnsynced || c.cfg.Now == nil || c.cfg.Net == nil {
		t.Errorf("defaults not applied: %+v", c.cfg)
	}
	if st := c.Status(); st.Source != SourceNone || st.Offset != 0 || st.Uncertainty != DefaultUnsynced {
		t.Errorf("unsynced clock: %+v", st)
	}
	c, err = New(Config{Servers: []string{"127.0.0.1", "ntp.example", "::1", "[::1]:9"}})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"127.0.0.1:123", "ntp.example:123", "[::1]:123", "[::1]:9"}
	if strings.Join(c.cfg.Servers, " ") != strings.Join(want, " ") {
		t.Errorf("normalized servers: %v, want %v", c.cfg.Servers, want)
	}
}

func TestCombine(t *testing.T) {
	ms := time.Millisecond
	s := func(off, dist time.Duration) sample { return sample{offset: off * ms, dist: dist * ms} }
	for _, tc := range []struct {
		name     string
		in       []sample // sorted by offset
		off, unc time.Duration
	}{
		{"one", []sample{s(5, 3)}, 5 * ms, 3 * ms},
		{"odd: median, its distance", []sample{s(-900, 1), s(4, 7), s(6, 2)}, 4 * ms, 7 * ms},
		{"even: mean of middles, wider distance plus half gap", []sample{s(2, 3), s(6, 5)}, 4 * ms, 7 * ms},
		{"falseticker ignored", []sample{s(1, 2), s(2, 2), s(3, 2), s(4, 2), s(5000, 1)}, 3 * ms, 2 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			off, unc := combine(tc.in)
			if off != tc.off || unc != tc.unc {
				t.Errorf("combine = %s ± %s, want %s ± %s", off, unc, tc.off, tc.unc)
			}
		})
	}
}

// TestSyncStund syncs against our stund's SNTP on loopback with local
// clocks skewed by several seconds either way: the skew must be measured
// and removed.
func TestSyncStund(t *testing.T) {
	srv := startStund(t)
	for _, skew := range []time.Duration{0, 7 * time.Second, -5*time.Second - 300*time.Millisecond, 90 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			var local skewed
			local.set(skew)
			reg := prometheus.NewRegistry()
			c, err := New(Config{Servers: []string{srv}, Now: local.now, Registry: reg})
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.Sync(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Source != SourceNTP || st.Servers != 1 {
				t.Fatalf("status %+v", st)
			}
			if e := abs(st.Offset + skew); e > few || e > st.Uncertainty {
				t.Errorf("offset %s for skew %s: error %s (uncertainty %s)", st.Offset, skew, e, st.Uncertainty)
			}
			// stund says root dispersion ~10 ms: the bound must include it.
			if st.Uncertainty < 10*time.Millisecond || st.Uncertainty > 10*time.Millisecond+time.Second {
				t.Errorf("uncertainty %s, want root dispersion 10 ms + RTT/2", st.Uncertainty)
			}
			if e := abs(time.Until(c.Now())); e > few {
				t.Errorf("corrected clock is %s off the real one", e)
			}
			if n := counter(t, c, "queries", queryValid); n != DefaultSamples {
				t.Errorf("%d valid queries, want %d", n, DefaultSamples)
			}
			if n := counter(t, c, "syncs", syncNTP); n != 1 {
				t.Errorf("%d ntp syncs", n)
			}
			metricstest.Lint(t, reg, "agent")
		})
	}
}

// TestMedianAcrossServers uses three servers, one of which lies by an hour:
// the median must follow the two honest ones.
func TestMedianAcrossServers(t *testing.T) {
	liar := fakeNTP(t, func(req []byte) []byte {
		return ntpReply(req, func(b []byte) {
			ts := ntpTS(time.Now().Add(time.Hour))
			binary.BigEndian.PutUint64(b[32:], ts)
			binary.BigEndian.PutUint64(b[40:], ts)
		})
	})
	honest := fakeNTP(t, func(req []byte) []byte { return ntpReply(req, nil) })
	var local skewed
	local.set(-3 * time.Second)
	c, err := New(Config{Servers: []string{startStund(t), liar, honest}, Now: local.now})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Servers != 3 || abs(st.Offset-3*time.Second) > few {
		t.Errorf("status %+v, want 3 servers and offset 3s", st)
	}
}

// TestRejectsBadReplies: garbage, kiss-of-death and unsynchronised replies
// are counted as rejected and never become the estimate; a KoD stops the
// queries to that server.
func TestRejectsBadReplies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reply   func(req []byte) []byte
		queries int    // rejected queries expected
		err     string // in LastError
	}{
		{"garbage", func([]byte) []byte { return []byte("not an NTP packet") }, DefaultSamples, "invalid time"},
		{"client mode", func(req []byte) []byte { return req }, DefaultSamples, "invalid mode"},
		{"kiss of death", func(req []byte) []byte {
			return ntpReply(req, func(b []byte) { b[1] = 0; copy(b[12:16], "RATE") })
		}, 1, "kiss of death received (RATE)"},
		{"stratum 16", func(req []byte) []byte { return ntpReply(req, func(b []byte) { b[1] = 16 }) }, DefaultSamples, "invalid stratum"},
		{"leap alarm", func(req []byte) []byte { return ntpReply(req, func(b []byte) { b[0] |= 3 << 6 }) }, DefaultSamples, "invalid leap second"},
		{"wrong origin", func(req []byte) []byte {
			return ntpReply(req, func(b []byte) { b[24] ^= 0xff })
		}, DefaultSamples, "didn't match request"},
		{"zero transmit", func(req []byte) []byte {
			return ntpReply(req, func(b []byte) { clear(b[32:48]) })
		}, DefaultSamples, "invalid transmit time"},
		{"dispersion 20 s", func(req []byte) []byte {
			return ntpReply(req, func(b []byte) { binary.BigEndian.PutUint32(b[8:], 20<<16) })
		}, DefaultSamples, "invalid dispersion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{Servers: []string{fakeNTP(t, tc.reply)}, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.Sync(context.Background())
			if err == nil || st.Source != SourceNone || st.Offset != 0 {
				t.Fatalf("bad replies accepted: %+v, %v", st, err)
			}
			if !strings.Contains(st.LastError, tc.err) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %q, want it to say %q", st.LastError, tc.err)
			}
			if n := counter(t, c, "queries", queryRejected); n != tc.queries {
				t.Errorf("%d rejected queries, want %d", n, tc.queries)
			}
			if n := counter(t, c, "syncs", syncNone); n != 1 {
				t.Errorf("%d syncs with no source", n)
			}
		})
	}
}

// TestFallback: with no NTP server answering, the RTT hook gives offset 0
// and uncertainty RTT/2; without it (or if it fails) the source is none.
func TestFallback(t *testing.T) {
	silent := fakeNTP(t, func([]byte) []byte { return nil })
	hook := func(d time.Duration, err error) func(context.Context) (time.Duration, error) {
		return func(context.Context) (time.Duration, error) { return d, err }
	}
	for _, tc := range []struct {
		name    string
		servers []string
		rtt     func(context.Context) (time.Duration, error)
		source  Source
		unc     time.Duration
		failed  bool
	}{
		{"silent server, rtt hook", []string{silent}, hook(80*time.Millisecond, nil), SourceSignallingRTT, 40 * time.Millisecond, false},
		{"closed port, rtt hook", []string{closedPort(t)}, hook(30*time.Millisecond, nil), SourceSignallingRTT, 15 * time.Millisecond, false},
		{"no servers, rtt hook", nil, hook(10*time.Millisecond, nil), SourceSignallingRTT, 5 * time.Millisecond, false},
		{"silent server, no hook", []string{silent}, nil, SourceNone, DefaultUnsynced, true},
		{"hook fails", []string{silent}, hook(0, errors.New("peer gone")), SourceNone, DefaultUnsynced, true},
		{"hook negative", []string{silent}, hook(-time.Second, nil), SourceNone, DefaultUnsynced, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var local skewed
			local.set(4 * time.Second)
			c, err := New(Config{Servers: tc.servers, RTT: tc.rtt, Timeout: 200 * time.Millisecond, Samples: 2, Now: local.now})
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.Sync(context.Background())
			if (err != nil) != tc.failed {
				t.Fatalf("error %v, want failure %v", err, tc.failed)
			}
			if st.Source != tc.source || st.Offset != 0 || st.Uncertainty != tc.unc || c.Source() != tc.source {
				t.Errorf("status %+v, want source %s, offset 0, uncertainty %s", st, tc.source, tc.unc)
			}
			if st.LastError == "" {
				t.Error("no reason given for the missing NTP answer")
			}
			// A server that does not answer at all is asked once per sync.
			if n := counter(t, c, "queries", queryError); n != len(tc.servers) {
				t.Errorf("%d unanswered queries counted, want %d", n, len(tc.servers))
			}
			if e := abs(c.Now().Sub(local.now())); e > few {
				t.Errorf("the fallback moved the clock by %s", e)
			}
		})
	}
}

// TestKeepsBetterEstimate: after an NTP sync, a failed one keeps the NTP
// estimate while it is tighter than the signalling fallback, and the
// estimate's uncertainty grows with its age on the (injected) local clock.
func TestKeepsBetterEstimate(t *testing.T) {
	var up atomic.Bool
	up.Store(true)
	good := fakeNTP(t, func(req []byte) []byte {
		if !up.Load() {
			return nil
		}
		return ntpReply(req, nil)
	})
	rtt := 2 * time.Second
	var local skewed
	local.set(-2 * time.Second)
	c, err := New(Config{Servers: []string{good}, Timeout: 200 * time.Millisecond, Samples: 1, Now: local.now,
		RTT: func(context.Context) (time.Duration, error) { return rtt, nil }})
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Sync(context.Background())
	if err != nil || first.Source != SourceNTP {
		t.Fatalf("first sync %+v, %v", first, err)
	}
	up.Store(false)
	st, err := c.Sync(context.Background())
	if err != nil || st.Source != SourceNTP || st.Offset != first.Offset || st.LastError == "" {
		t.Fatalf("NTP estimate not kept: %+v, %v", st, err)
	}
	if n := counter(t, c, "syncs", syncKept); n != 1 {
		t.Errorf("%d kept syncs", n)
	}
	// 1000 s later on the local clock the bound has grown by 15 ms.
	local.set(-2*time.Second + 1000*time.Second)
	grown := c.Uncertainty() - first.Base
	if grown < 15*time.Millisecond || grown > 16*time.Millisecond {
		t.Errorf("uncertainty grew by %s over 1000 s, want 15 ms", grown)
	}
	// A fallback tighter than the aged NTP estimate replaces it.
	rtt = time.Millisecond
	st, err = c.Sync(context.Background())
	if err != nil || st.Source != SourceSignallingRTT || st.Offset != 0 || st.Uncertainty != 500*time.Microsecond {
		t.Fatalf("fallback not taken: %+v, %v", st, err)
	}
}

// TestRun re-syncs periodically, follows a change of the local clock and
// stops when its context is cancelled.
func TestRun(t *testing.T) {
	var local skewed
	local.set(time.Second)
	c, err := New(Config{Servers: []string{startStund(t)}, Interval: 20 * time.Millisecond, Samples: 1, Now: local.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, "two syncs", func() bool { return counter(t, c, "syncs", syncNTP) >= 2 })
	waitFor(t, "offset -1s", func() bool { return abs(c.Offset()+time.Second) < few })
	local.set(-6 * time.Second)
	waitFor(t, "offset +6s after the local clock moved", func() bool { return abs(c.Offset()-6*time.Second) < few })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop on cancel")
	}
}

// TestCancelSync: a sync waiting on a silent server with a long timeout
// ends as soon as its context does.
func TestCancelSync(t *testing.T) {
	c, err := New(Config{Servers: []string{fakeNTP(t, func([]byte) []byte { return nil })}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := c.Sync(ctx); done <- err }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Sync returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sync did not stop on cancel")
	}
	if c.Source() != SourceNone {
		t.Errorf("cancelled sync changed the source to %s", c.Source())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A server that never answers does not hold a sync up once another server
// has answered: the sync ends within lateGrace of that answer, not after
// the silent server's timeouts. (Ordering, not a timing bound: the silent
// server is cut off, so it is reported as not answering in time.)
func TestSilentServerCutOff(t *testing.T) {
	good := startStund(t)
	silent := fakeNTP(t, func([]byte) []byte { return nil })
	c, err := New(Config{Servers: []string{good, silent}, Samples: 4, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.Sync(ctx) // without the cut-off this waits out the 30 s timeout and ctx fails it
	if err != nil || st.Source != SourceNTP || st.Servers != 1 {
		t.Fatalf("sync %+v %v: want NTP from the one answering server", st, err)
	}
}
