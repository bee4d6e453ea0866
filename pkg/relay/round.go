package relay

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// round tries the servers in order until one allocates. The transports of
// one server race with staggered starts (udp first, tcp FallbackDelay later
// or as soon as udp failed, then tls), so a network that drops UDP costs
// FallbackDelay rather than a whole DialTimeout.
func (c *Client) round() (*allocation, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var errs []string
	for _, s := range c.cfg.Servers {
		a, failed := c.race(ctx, s.attempts())
		if a != nil {
			return a, nil
		}
		if ctx.Err() != nil {
			return nil, ErrClosed
		}
		errs = append(errs, failed...)
	}
	return nil, fmt.Errorf("relay: no TURN server allocated: %s", strings.Join(errs, "; "))
}

// race runs the attempts with staggered starts and returns the first
// allocation made (later ones are released), or each attempt's error.
func (c *Client) race(ctx context.Context, ats []attempt) (*allocation, []string) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i   int
		a   *allocation
		err error
	}
	out := make(chan result, len(ats))
	errs := make([]string, len(ats))
	started, pending := 0, 0
	startNext := func() {
		i := started
		started++
		pending++
		go func() {
			a, err := allocate(ctx, &c.cfg, c.m, ats[i], c.cfg.TLS, c.serverTLS, c.qconf)
			out <- result{i, a, err}
		}()
	}
	startNext()
	timer := time.NewTimer(c.cfg.FallbackDelay)
	defer timer.Stop()
	var win *allocation
	for pending > 0 {
		select {
		case r := <-out:
			pending--
			switch {
			case r.err == nil && win == nil:
				win = r.a
				cancel() // the others give up
			case r.err == nil:
				go r.a.release() // lost the race
			case win == nil:
				errs[r.i] = fmt.Sprintf("%s over %s: %s", ats[r.i].addr, ats[r.i].transport, strings.TrimPrefix(r.err.Error(), "relay: "))
				if started < len(ats) {
					startNext()
				}
			}
		case <-timer.C:
			if win == nil && started < len(ats) {
				startNext()
				timer.Reset(c.cfg.FallbackDelay)
			}
		}
	}
	if win != nil {
		return win, nil
	}
	var failed []string
	for _, e := range errs {
		if e != "" {
			failed = append(failed, e)
		}
	}
	return nil, failed
}
