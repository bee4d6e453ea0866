package agent

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/p2pd-go/p2pd/pkg/clock"
	"github.com/p2pd-go/p2pd/pkg/netif"
)

// ClockConfig configures the corrected clock the agent agrees meeting
// times with (hole punching). The zero value queries SNTP on the hosts of
// Config.STUNServers (what stund --ntp answers on a private stack).
type ClockConfig struct {
	// Servers are NTP/SNTP servers ("host", "host:port", "IP", "IP:port");
	// empty: the STUN servers' hosts on port 123.
	Servers []string
	// Now is the local clock (nil: time.Now). Tests inject a skewed clock
	// here: every NAT-lab namespace shares one wall clock.
	Now func() time.Time
	// Interval between syncs (0: clock.DefaultInterval).
	Interval time.Duration
}

// validate checks the clock's configuration without starting anything.
func (c ClockConfig) validate(stun []netip.AddrPort) error {
	if _, err := clock.New(clock.Config{Servers: c.Servers, STUNServers: stun, Interval: c.Interval}); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// newClock builds the agent's clock from its configuration. With no NTP
// answer it falls back to half a signalling round trip (sigrtt.go).
func (a *Agent) newClock() (*clock.Clock, error) {
	stun := a.cfg.STUNServers
	if len(a.cfg.Clock.Servers) == 0 && a.udpBlocked() {
		// SNTP is UDP: waiting for its timeouts would only delay the
		// first estimate; go straight to the signalling round trip.
		stun = nil
		a.cfg.Log.Info("clock: UDP is blocked; using the signalling round trip, not NTP")
	}
	c, err := clock.New(clock.Config{
		Servers: a.cfg.Clock.Servers, STUNServers: stun, Interval: a.cfg.Clock.Interval,
		RTT: a.signallingRTT, Net: a.cfg.Net, Now: a.cfg.Clock.Now, Registry: a.cfg.Registry, Log: a.cfg.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return c, nil
}

// udpBlocked reports whether STUN got no UDP answer on any IPv4 route.
func (a *Agent) udpBlocked() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	routes := 0
	for _, ifc := range a.ifs {
		rs := ifc.Routes[netif.AF4]
		if len(rs) == 0 {
			continue
		}
		routes++
		if n := a.stunNotes[rs[0].NICIP()]; n != stunUDPBlocked && n != stunNone {
			return false
		}
	}
	return routes > 0
}

// runClock syncs the clock in the background (now, then every Interval)
// until the agent stops. Until the first sync ends the clock reports
// source "none" with a wide uncertainty, which a punch adds to its meeting
// time: it still meets, later.
func (a *Agent) runClock() {
	ctx, cancel := context.WithCancel(context.Background())
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		select {
		case <-a.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	go func() {
		defer a.wg.Done()
		defer cancel()
		_ = a.clock.Run(ctx)
	}()
}

// clockStartWait bounds how long start-up waits for the first clock sync.
// A sync against stund's SNTP takes a few round trips; without it the first
// punches would meet a second later (the unsynced uncertainty) and lose to
// the relay.
const clockStartWait = 1500 * time.Millisecond

// awaitClock waits (up to clockStartWait) until the clock has a source.
func (a *Agent) awaitClock(ctx context.Context) {
	deadline := time.NewTimer(clockStartWait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for a.clock.Source() == clock.SourceNone {
		select {
		case <-tick.C:
		case <-deadline.C:
			a.cfg.Log.Info("clock not synced yet at start-up; punches meet later until it is", "waited", clockStartWait)
			return
		case <-ctx.Done():
			return
		}
	}
}

// Clock is the agent's corrected clock (nil before Start).
func (a *Agent) Clock() *clock.Clock { return a.clock }
