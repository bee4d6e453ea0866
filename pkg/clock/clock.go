// Package clock estimates how far the local clock is from true time, so two
// peers can agree on a moment (the hole-punching meeting time) without
// trusting their system clocks. It queries NTP/SNTP servers with
// github.com/beevik/ntp (by default stund's SNTP on the private stack's STUN
// hosts), keeps the lowest-RTT valid reply per server, takes the median
// offset across servers, and bounds the error by the root distance. When no
// server answers it falls back to offset 0 with an uncertainty of half a
// signalling round trip, and says so in Source.
package clock

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Source says where the current offset comes from.
type Source string

// Sources.
const (
	SourceNTP           Source = "ntp"            // median of NTP servers
	SourceSignallingRTT Source = "signalling-rtt" // offset 0, uncertainty RTT/2 of a signalling exchange
	SourceNone          Source = "none"           // nothing answered: offset 0, uncertainty Config.Unsynced
)

// Status is a snapshot of the clock's estimate.
type Status struct {
	Source Source `json:"source"`
	// Offset is added to the local clock to get the corrected time.
	Offset time.Duration `json:"offset"`
	// Uncertainty bounds |corrected - true| now (it grows with the age of
	// the estimate, see Uncertainty).
	Uncertainty time.Duration `json:"uncertainty"`
	// Base is the uncertainty at the time of the sync; Synced is that time
	// (local clock, zero before the first sync).
	Base   time.Duration `json:"base"`
	Synced time.Time     `json:"synced"`
	// Servers is how many NTP servers gave a valid reply in the sync the
	// estimate comes from; RTT is the signalling RTT for signalling-rtt.
	Servers int           `json:"servers"`
	RTT     time.Duration `json:"rtt,omitempty"`
	// LastError is why the latest sync found no NTP answer ("" if it did).
	LastError string `json:"last_error,omitempty"`
}

// Clock is a corrected clock. Its methods are safe for concurrent use.
type Clock struct {
	cfg Config
	m   *metrics

	mu sync.Mutex
	st Status
}

// New checks cfg and returns a clock that is unsynced (source "none") until
// Sync or Run has run.
func New(cfg Config) (*Clock, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Clock{cfg: cfg, st: Status{Source: SourceNone, Base: cfg.Unsynced}}
	if c.m, err = newMetrics(c, cfg.Registry); err != nil {
		return nil, fmt.Errorf("clock: metrics: %w", err)
	}
	return c, nil
}

// Now is the corrected time: the local clock plus Offset.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	off := c.st.Offset
	c.mu.Unlock()
	return c.cfg.Now().Add(off)
}

// Offset is what is added to the local clock to get the corrected time.
func (c *Clock) Offset() time.Duration { return c.Status().Offset }

// Uncertainty bounds the error of Now: the uncertainty at sync time plus
// 15 ppm of the time since (the worst drift RFC 5905 assumes of a local
// clock).
func (c *Clock) Uncertainty() time.Duration { return c.Status().Uncertainty }

// Source says where the offset comes from.
func (c *Clock) Source() Source { return c.Status().Source }

// Status returns the current estimate.
func (c *Clock) Status() Status {
	c.mu.Lock()
	st := c.st
	c.mu.Unlock()
	st.Uncertainty = aged(st, c.cfg.Now())
	return st
}

// aged is st's base uncertainty grown by the drift since it was measured.
func aged(st Status, now time.Time) time.Duration {
	if st.Source == SourceNone || st.Synced.IsZero() {
		return st.Base
	}
	age := now.Sub(st.Synced)
	if age < 0 {
		age = -age // the local clock stepped back: still a bound
	}
	return st.Base + age/1e6*driftPPM
}

// Run syncs now and then every Interval (every Retry after a sync in which
// no NTP server answered) until ctx ends. It returns ctx's error.
func (c *Clock) Run(ctx context.Context) error {
	for {
		wait := c.cfg.Interval
		st, err := c.Sync(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil || st.LastError != "" {
			wait = c.cfg.Retry
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
