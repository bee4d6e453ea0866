package clock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/beevik/ntp"
)

// Sync results counted in agent_clock_syncs_total.
const (
	syncNTP        = "ntp"            // NTP servers answered
	syncSignalling = "signalling-rtt" // no NTP; the signalling RTT gave the estimate
	syncKept       = "kept"           // no NTP; the previous estimate was still the better one
	syncNone       = "none"           // no source at all
)

// sample is the best valid reply of one server in one sync.
type sample struct {
	server string
	offset time.Duration // server time minus local time
	rtt    time.Duration
	dist   time.Duration // root distance: (rtt + root delay)/2 + root dispersion
}

// Sync queries every server once (Samples queries each), updates the
// estimate and returns it. With no NTP answer it falls back to the RTT hook,
// keeping a previous estimate instead when that one is still tighter; the
// error is non-nil only when no source at all is available or ctx ended.
func (c *Clock) Sync(ctx context.Context) (Status, error) {
	best, errs := c.queryAll(ctx)
	now := c.cfg.Now()
	if len(best) > 0 {
		off, unc := combine(best)
		c.set(Status{Source: SourceNTP, Offset: off, Base: unc, Synced: now, Servers: len(best)})
		c.m.syncs.WithLabelValues(syncNTP).Inc()
		st := c.Status()
		c.cfg.Log.Info("clock: synced", "source", st.Source, "offset", off, "uncertainty", unc, "servers", len(best))
		return st, nil
	}
	if err := ctx.Err(); err != nil {
		return c.Status(), fmt.Errorf("clock: sync: %w", err)
	}
	noNTP := fmt.Errorf("clock: no NTP server answered: %w", errors.Join(errs...))
	if len(errs) == 0 {
		noNTP = errors.New("clock: no NTP servers configured")
	}
	cand := Status{Source: SourceNone, Base: c.cfg.Unsynced}
	if c.cfg.RTT != nil {
		rtt, err := c.cfg.RTT(ctx)
		switch {
		case err != nil:
			noNTP = fmt.Errorf("%w; signalling rtt: %w", noNTP, err)
		case rtt < 0:
			noNTP = fmt.Errorf("%w; signalling rtt %s is negative", noNTP, rtt)
		default:
			cand = Status{Source: SourceSignallingRTT, Base: rtt / 2, Synced: now, RTT: rtt}
		}
	}
	cand.LastError = noNTP.Error()

	c.mu.Lock()
	result := syncNone
	switch {
	case c.st.Source != SourceNone && aged(c.st, now) <= aged(cand, now):
		c.st.LastError = cand.LastError
		result = syncKept
	default:
		c.st = cand
		if cand.Source == SourceSignallingRTT {
			result = syncSignalling
		}
	}
	c.mu.Unlock()
	c.m.syncs.WithLabelValues(result).Inc()
	st := c.Status()
	c.cfg.Log.Warn("clock: no NTP answer", "result", result, "source", st.Source,
		"offset", st.Offset, "uncertainty", st.Uncertainty, "err", noNTP)
	if result == syncNone {
		return st, noNTP
	}
	return st, nil
}

func (c *Clock) set(st Status) {
	c.mu.Lock()
	c.st = st
	c.mu.Unlock()
}

// lateGrace is how long the other servers may still answer once one server
// has: a fresh agent should not wait out the timeouts of a server that does
// not answer (often the second STUN host, which runs no SNTP).
const lateGrace = 250 * time.Millisecond

// queryAll asks all servers in parallel and returns the best sample of each
// that answered, and one error for each that did not. Once one server has
// answered, the others get lateGrace to finish.
func (c *Clock) queryAll(ctx context.Context) ([]sample, []error) {
	var (
		mu    sync.Mutex
		best  []sample
		errs  []error
		wg    sync.WaitGroup
		timer *time.Timer
	)
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, srv := range c.cfg.Servers {
		wg.Go(func() {
			s, err := c.queryServer(qctx, srv)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if ctx.Err() == nil && qctx.Err() != nil {
					err = fmt.Errorf("no answer within %v of the first server's: %w", lateGrace, err)
				}
				errs = append(errs, fmt.Errorf("%s: %w", srv, err))
				return
			}
			best = append(best, s)
			if timer == nil {
				timer = time.AfterFunc(lateGrace, cancel)
			}
		})
	}
	wg.Wait()
	if timer != nil {
		timer.Stop()
	}
	slices.SortFunc(best, func(a, b sample) int { return cmp.Compare(a.offset, b.offset) })
	return best, errs
}

// queryServer sends up to Samples queries to srv, one after another, and
// keeps the valid reply with the lowest RTT. A kiss-of-death ends it.
func (c *Clock) queryServer(ctx context.Context, srv string) (sample, error) {
	var (
		best    sample
		ok      bool
		lastErr error
	)
	for range c.cfg.Samples {
		if ctx.Err() != nil {
			lastErr = ctx.Err()
			break
		}
		r, err := c.query(ctx, srv)
		if err == nil {
			err = r.Validate()
		}
		if err != nil {
			res := queryRejected
			if isNetErr(err) {
				res = queryError
			}
			c.m.queries.WithLabelValues(res).Inc()
			c.cfg.Log.Debug("clock: query failed", "server", srv, "result", res, "err", err)
			lastErr = err
			if errors.Is(err, ntp.ErrKissOfDeath) {
				lastErr = fmt.Errorf("%w (%s)", err, r.KissCode)
				break // RFC 5905 7.4: stop asking a server that sent a kiss code
			}
			if !ok && res == queryError {
				break // no answer at all: the next sync asks again
			}
			continue
		}
		c.m.queries.WithLabelValues(queryValid).Inc()
		if !ok || r.RTT < best.rtt {
			best = sample{server: srv, offset: r.ClockOffset, rtt: r.RTT, dist: r.RootDistance}
			ok = true
		}
	}
	if !ok {
		return sample{}, lastErr
	}
	return best, nil
}

// query sends one NTPv4 query from a socket of cfg.Net, timed with cfg.Now.
// The socket is closed when ctx ends, so a cancelled sync returns at once.
func (c *Clock) query(ctx context.Context, srv string) (*ntp.Response, error) {
	qctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var stop func() bool
	opt := ntp.QueryOptions{
		Timeout:       c.cfg.Timeout,
		GetSystemTime: c.cfg.Now,
		Dialer: func(_, remote string) (net.Conn, error) {
			conn, err := c.cfg.Net.DialContext(qctx, "udp", remote)
			if err != nil {
				return nil, err
			}
			stop = context.AfterFunc(qctx, func() { _ = conn.Close() })
			return conn, nil
		},
	}
	r, err := ntp.QueryWithOptions(srv, opt)
	if stop != nil {
		stop()
	}
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return r, err
}

// isNetErr tells a missing reply (timeout, unreachable, dial failure) from
// a reply that came and was rejected.
func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// combine takes samples sorted by offset and returns the median offset and
// its uncertainty: the root distance of the median sample; for an even
// count, the mean of the two middle offsets with the larger of their root
// distances plus half the gap between them.
func combine(s []sample) (offset, uncertainty time.Duration) {
	n := len(s)
	if n%2 == 1 {
		m := s[n/2]
		return m.offset, m.dist
	}
	a, b := s[n/2-1], s[n/2]
	gap := b.offset - a.offset
	return a.offset + gap/2, max(a.dist, b.dist) + gap/2
}
