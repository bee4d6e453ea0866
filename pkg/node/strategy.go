package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/p2pd-go/p2pd/pkg/signal"
)

// Strategy is one way of opening a pipe to a peer: direct, reverse, punch,
// relay. The node runs the configured strategies as a race (see Connect);
// pkg/node holds direct and reverse, pkg/agent wires the others in through
// Config.Extra.
type Strategy interface {
	// Name is the strategy's name in reports, metrics and the API.
	Name() string
	// Connect opens an authenticated pipe to a.To, or fails. It must give up
	// when ctx ends.
	Connect(ctx context.Context, a Attempt) (*SecureConn, error)
}

// Planner is implemented by strategies that can tell from the two peer
// addresses (NAT profiles, configured servers) that they cannot work. A
// non-empty reason skips the strategy; the report carries the reason.
type Planner interface {
	Plan(a Attempt) (skip string)
}

// SignalHandler is implemented by strategies that take signalling messages
// (reverse takes CON, relay takes TURN, punch takes PUNCH).
type SignalHandler interface {
	// SignalTypes lists the message types the strategy handles.
	SignalTypes() []signal.Type
	// HandleSignal acts on one message of those types.
	HandleSignal(m *signal.Message)
}

// Attempt is what a strategy is given for one connect.
type Attempt struct {
	To   peeraddr.Address       // the peer's address
	Peer [identity.KeySize]byte // the peer's public key (from To.NodeID)
	Mine peeraddr.Address       // our own current address (zero if unknown)
	// PipeID is fresh for this strategy's attempt; a strategy that needs
	// several ids makes its own.
	PipeID string
}

// ErrSkipped marks a phase the plan ruled out before it started.
var ErrSkipped = errors.New("node: skipped by plan")

// Options tune one Connect. The zero value runs Config.Strategies with the
// node's default delays and deadlines.
type Options struct {
	// Strategies names the strategies to run, in priority order; empty runs
	// every configured strategy.
	Strategies []string
	// Timeout bounds each strategy (default: the strategy's deadline from
	// Config.Deadlines, else 10 s). The whole connect ends with the last one.
	Timeout time.Duration
	// NoStagger starts every strategy at once instead of after its delay.
	NoStagger bool
}

// Phase is one strategy's part in a connect.
type Phase struct {
	Strategy string        `json:"strategy"`
	Start    time.Duration `json:"start_ns"`    // when it started, after the connect began
	Duration time.Duration `json:"duration_ns"` // how long it ran (0 if skipped)
	Result   string        `json:"result"`      // ok, failed, skipped, lost, cancelled
	Err      string        `json:"error,omitempty"`
	// Transport is the winner's socket type: tcp, or udp (a QUIC stream:
	// relay, UDP punch).
	Transport string `json:"transport,omitempty"`
}

// Report says which strategy won, when, and what every other one did.
type Report struct {
	Winner string        `json:"winner,omitempty"`
	Total  time.Duration `json:"total_ns"`
	Phases []Phase       `json:"phases"`
	// Remote is the winning pipe's remote endpoint: its family says
	// whether, say, a punch won over IPv6 or IPv4.
	Remote string `json:"remote,omitempty"`
}

// ErrNoStrategy is returned when every strategy failed or was skipped; the
// joined errors say why.
var ErrNoStrategy = errors.New("node: every strategy failed")

// Phase results.
const (
	ResultOK        = "ok"
	ResultFailed    = "failed"
	ResultSkipped   = "skipped"
	ResultLost      = "lost"      // succeeded after another strategy had won
	ResultCancelled = "cancelled" // stopped because another strategy won
)

func (n *Node) strategy(name string) Strategy {
	for _, s := range n.strategies {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

// StrategyNames lists the configured strategies in priority order.
func (n *Node) StrategyNames() []string {
	out := make([]string, len(n.strategies))
	for i, s := range n.strategies {
		out[i] = s.Name()
	}
	return out
}

// Connect opens an authenticated pipe to the node of address to, running
// the named strategies (every configured one when none are named).
func (n *Node) Connect(ctx context.Context, to peeraddr.Address, strategies ...string) (*SecureConn, Report, error) {
	return n.ConnectWith(ctx, to, Options{Strategies: strategies})
}

type outcome struct {
	i   int
	sc  *SecureConn
	err error
	end time.Duration
}

// ConnectWith runs a connect as a race with staggered starts: each strategy
// starts after its delay (Config.Delays) unless the plan skips it, the first
// pipe that completes its handshake wins, and the others are cancelled or,
// if they succeed too late, closed.
func (n *Node) ConnectWith(ctx context.Context, to peeraddr.Address, o Options) (*SecureConn, Report, error) {
	var rep Report
	peer, err := identity.ParseNodeID(to.NodeID)
	if err != nil {
		return nil, rep, fmt.Errorf("node: connect: %w", err)
	}
	names := o.Strategies
	if len(names) == 0 {
		names = n.StrategyNames()
	}
	var run []Strategy
	for _, name := range names {
		s := n.strategy(name)
		if s == nil {
			return nil, rep, fmt.Errorf("node: connect: unknown strategy %q (configured: %v)", name, n.StrategyNames())
		}
		run = append(run, s)
	}
	mine := n.myAddress()
	begin := time.Now()
	rep.Phases = make([]Phase, len(run))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan outcome, len(run))
	var errs []error
	started := 0
	for i, s := range run {
		rep.Phases[i].Strategy = s.Name()
		a := Attempt{To: to, Peer: peer, Mine: mine, PipeID: newPipeID()}
		if p, ok := s.(Planner); ok {
			if why := p.Plan(a); why != "" {
				rep.Phases[i].Result = ResultSkipped
				rep.Phases[i].Err = why
				errs = append(errs, fmt.Errorf("%s: %w: %s", s.Name(), ErrSkipped, why))
				n.cfg.Metrics.Connects.WithLabelValues(s.Name(), ResultSkipped).Inc()
				continue
			}
		}
		delay := n.delay(s.Name(), started)
		if o.NoStagger {
			delay = 0
		}
		timeout := o.Timeout
		if timeout <= 0 {
			timeout = n.deadline(s.Name())
		}
		started++
		go func() {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				results <- outcome{i: i, err: ctx.Err(), end: -1}
				return
			}
			t0 := time.Since(begin)
			sctx, scancel := context.WithTimeout(ctx, timeout)
			defer scancel()
			sc, err := s.Connect(sctx, a)
			if err != nil && sctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
				err = fmt.Errorf("no pipe within %v: %w", timeout, err)
			}
			results <- outcome{i: i, sc: sc, err: err, end: time.Since(begin) - t0}
		}()
		rep.Phases[i].Start = delay
	}
	var winner *SecureConn
	for range started {
		r := <-results
		ph := &rep.Phases[r.i]
		name := ph.Strategy
		if r.end >= 0 {
			ph.Duration = r.end
			n.cfg.Metrics.Duration.WithLabelValues(name).Observe(r.end.Seconds())
		} else {
			ph.Start = 0 // never started
		}
		switch {
		case r.err == nil && winner == nil:
			winner = r.sc
			ph.Result = ResultOK
			ph.Transport = r.sc.LocalAddr().Network()
			rep.Winner = name
			rep.Total = time.Since(begin)
			if ra := r.sc.RemoteAddr(); ra != nil {
				rep.Remote = ra.String()
			}
			cancel() // stop the others
		case r.err == nil:
			r.sc.Close()
			ph.Result = ResultLost
		case winner != nil && ctx.Err() != nil:
			ph.Result = ResultCancelled
		default:
			ph.Result = ResultFailed
			ph.Err = r.err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", name, r.err))
		}
		n.cfg.Metrics.Connects.WithLabelValues(name, ph.Result).Inc()
	}
	if winner != nil {
		n.cfg.Metrics.Time.Observe(rep.Total.Seconds())
		return winner, rep, nil
	}
	rep.Total = time.Since(begin)
	if len(errs) == 0 {
		errs = append(errs, errors.New("no strategy to run"))
	}
	return nil, rep, fmt.Errorf("%w: %w", ErrNoStrategy, errors.Join(errs...))
}

// delay is when a strategy starts: the first one to run starts at once;
// later ones after Config.Delays[name] (defaults in DefaultDelays).
func (n *Node) delay(name string, before int) time.Duration {
	if before == 0 {
		return 0
	}
	if d, ok := n.cfg.Delays[name]; ok {
		return d
	}
	return DefaultDelay(name)
}

func (n *Node) deadline(name string) time.Duration {
	if d, ok := n.cfg.Deadlines[name]; ok && d > 0 {
		return d
	}
	switch name {
	case Direct:
		return n.cfg.DirectTimeout
	case Reverse:
		return n.cfg.ReverseTimeout
	}
	return 10 * time.Second
}

// DefaultDelay is the staggered start of a strategy in the race unless
// Config.Delays says otherwise: reverse and punch once direct has had about
// one round trip, relay a little later. The first strategy that runs (the
// ones before it skipped) always starts at once.
func DefaultDelay(name string) time.Duration {
	switch name {
	case Reverse, KindPunch:
		return 100 * time.Millisecond
	case KindRelay:
		return 250 * time.Millisecond
	}
	return 0
}

// HandleSignal hands a signalling message to the strategy that takes its
// type. It reports false for types no strategy takes.
func (n *Node) HandleSignal(m *signal.Message) bool {
	for _, s := range n.strategies {
		h, ok := s.(SignalHandler)
		if !ok {
			continue
		}
		for _, t := range h.SignalTypes() {
			if t == m.Type {
				h.HandleSignal(m)
				return true
			}
		}
	}
	return false
}
