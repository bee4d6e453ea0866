package punch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
)

// Defaults of Config.
const (
	DefaultRounds = 3
	DefaultWindow = 2 * time.Second
	DefaultRetry  = 500 * time.Millisecond
	// DefaultMaxDials bounds the dials of one target in one round.
	DefaultMaxDials = 64
	// stagger spaces the first dials of a round's targets, so a symmetric
	// NAT gives them its next ports in target order: the peer's k-th
	// prediction of our port is then the one our dial to its k-th target
	// leaves from, and the two SYNs of pair k meet.
	stagger = 2 * time.Millisecond
	// redialGap spaces the re-dials of one target after a refusal, so a
	// peer that is not there yet costs a few hundred SYNs per second at most.
	redialGap = 3 * time.Millisecond
)

// Config is one punch.
type Config struct {
	// Net creates the sockets (nil: sock.Host).
	Net sock.Net
	// Options are the punch port's socket options: SO_REUSEADDR and
	// SO_REUSEPORT so it can share the node listener's port, and Local, the
	// punch port on the NIC address. Required.
	Options sock.Options
	// Targets are the peer's endpoints to dial (its mapping or predicted
	// ports). Required, at most MaxTargets.
	Targets []netip.AddrPort
	// At is the meeting time on the corrected clock Now.
	At time.Time
	// Now is the corrected clock (nil: time.Now).
	Now func() time.Time
	// Rounds (0: 3) of Window (0: 2 s) each, starting at At: each round
	// dials every target again that has not given a connection yet.
	Rounds int
	Window time.Duration
	// Retry abandons a dial that neither connected nor was refused (its SYN
	// was dropped) and dials again (0: 500 ms).
	Retry time.Duration
	// MaxDials bounds the dials of one target in one round (0: 64), so a
	// target that keeps refusing costs a bounded number of SYNs.
	MaxDials int
	// Accepted are connections from the peer that arrived at the listener
	// sharing the punch port (one side's SYN came in while the other had
	// no connect under way): they are handed to found like dialled ones.
	Accepted <-chan net.Conn
	Log      *slog.Logger
}

func (c *Config) defaults() error {
	if !c.Options.Local.IsValid() {
		return errors.New("punch: config needs the punch port (Options.Local)")
	}
	if len(c.Targets) == 0 || len(c.Targets) > MaxTargets {
		return fmt.Errorf("punch: %d targets, want 1-%d", len(c.Targets), MaxTargets)
	}
	if c.Net == nil {
		c.Net = sock.Host
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rounds <= 0 {
		c.Rounds = DefaultRounds
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Retry <= 0 {
		c.Retry = DefaultRetry
	}
	if c.MaxDials <= 0 {
		c.MaxDials = DefaultMaxDials
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Stats say what a punch did.
type Stats struct {
	Dials    int // connects started
	Refused  int // answered by a RST
	Accepted int // connections that came through the listener
	Rounds   int // rounds started
}

// ErrNoConnection is returned when no round opened a connection that found
// kept.
var ErrNoConnection = errors.New("punch: no connection through the NATs")

// Run waits for the meeting time, then dials every target from the punch
// port, re-dialling at once on a RST (the peer's NAT had no mapping yet)
// and after Retry when a SYN went unanswered; one connect per 4-tuple at a
// time (the kernel refuses a second). Every connection that opens, dialled
// or from Accepted, is given to found, one at a time: found returns true
// when it keeps the connection (the punch is over) and false when it
// disposed of it (handed it on, or closed it). Run returns when found kept
// one (nil), ctx ends, or the last round ends (ErrNoConnection); it closes,
// with a RST (SO_LINGER 0), every connection it opened that found did not
// get.
func Run(ctx context.Context, cfg Config, found func(net.Conn) bool) (Stats, error) {
	var st Stats
	if err := cfg.defaults(); err != nil {
		return st, err
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns := make(chan net.Conn)
	var wg sync.WaitGroup
	var mu sync.Mutex
	count := func(f func(*Stats)) { mu.Lock(); f(&st); mu.Unlock() }
	// offer hands a connection to the found loop, or aborts it if the punch
	// is over.
	offer := func(c net.Conn) bool {
		select {
		case conns <- c:
			return true
		case <-ctx.Done():
			Abort(c)
			return false
		}
	}
	if cfg.Accepted != nil {
		wg.Go(func() {
			for {
				select {
				case c := <-cfg.Accepted:
					count(func(s *Stats) { s.Accepted++ })
					offer(c)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Go(func() {
		defer close(conns)
		rounds(ctx, &cfg, count, offer)
	})
	var err error = ErrNoConnection
	kept := false
	for c := range conns {
		if !kept && found(c) {
			kept = true
			err = nil
			cancel()
			continue
		}
		if kept {
			Abort(c)
		}
	}
	cancel()
	wg.Wait()
	if !kept && parent.Err() != nil {
		err = fmt.Errorf("%w: %w", ErrNoConnection, parent.Err())
	}
	return st, err
}

// rounds runs the rounds one after another; it returns when they are over
// or ctx ends.
func rounds(ctx context.Context, cfg *Config, count func(func(*Stats)), offer func(net.Conn) bool) {
	done := make([]bool, len(cfg.Targets)) // a target that gave a connection
	for r := 0; r < cfg.Rounds; r++ {
		start := cfg.At.Add(time.Duration(r) * cfg.Window)
		if !sleepUntil(ctx, cfg.Now, start) {
			return
		}
		count(func(s *Stats) { s.Rounds++ })
		cfg.Log.Debug("punch round", "round", r+1, "targets", cfg.Targets)
		rctx, rcancel := context.WithDeadline(ctx, time.Now().Add(cfg.Window))
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i, t := range cfg.Targets {
			if done[i] {
				continue
			}
			wait := time.Duration(i) * stagger
			wg.Go(func() {
				pause(rctx, wait)
				if dialLoop(rctx, cfg, t, count, offer) {
					mu.Lock()
					done[i] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		rcancel()
		if ctx.Err() != nil {
			return
		}
	}
}

// sleepUntil waits until the corrected clock now reads t.
func sleepUntil(ctx context.Context, now func() time.Time, t time.Time) bool {
	d := t.Sub(now())
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// dialLoop dials t until a connection opens (handed to offer: true), the
// 4-tuple is taken (a connection came in through the listener instead),
// MaxDials were made, or ctx ends.
func dialLoop(ctx context.Context, cfg *Config, t netip.AddrPort, count func(func(*Stats)), offer func(net.Conn) bool) bool {
	network := "tcp4"
	if t.Addr().Is6() {
		network = "tcp6"
	}
	for range cfg.MaxDials {
		if ctx.Err() != nil {
			break
		}
		dctx, cancel := context.WithTimeout(ctx, cfg.Retry)
		count(func(s *Stats) { s.Dials++ })
		c, err := sock.Dial(dctx, cfg.Net, network, t.String(), cfg.Options)
		cancel()
		switch {
		case err == nil:
			offer(c)
			return true
		case errors.Is(err, syscall.ECONNREFUSED):
			count(func(s *Stats) { s.Refused++ })
			pause(ctx, redialGap)
		case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
			// The 4-tuple is in use: the peer's SYN reached our listener
			// and that connection comes through Accepted.
			cfg.Log.Debug("punch: 4-tuple taken", "target", t, "err", err)
			return true
		case dctx.Err() != nil:
			// The SYN went unanswered (dropped by a NAT): dial again.
		default:
			cfg.Log.Debug("punch: dial", "target", t, "err", err)
			pause(ctx, 50*time.Millisecond) // unreachable and the like
		}
	}
	return false
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Abort closes c with a RST (SO_LINGER 0) rather than a FIN, so a losing
// connection leaves no TIME_WAIT on the punch port's 4-tuple and the peer
// learns at once that it lost.
func Abort(c net.Conn) {
	if tc, ok := c.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
