package agent

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/p2pd-go/p2pd/internal/promreg"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/node/resume"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/prometheus/client_golang/prometheus"
)

// Pipe migration (docs/agent.md): a pipe whose connect the relay won runs
// in pkg/node/resume on both ends (negotiated in the TURN exchange and the
// Noise Hello). The connecting side then keeps trying the direct
// strategies in the background; before each attempt it tells the peer the
// attempt's pipe id over the relayed pipe itself (a control message) and
// waits for the peer's go-ahead, so the peer attaches the new pipe to the
// session instead of handing the application a second pipe. Data moves to
// the new path without a byte lost or repeated; the relay stays attached as
// standby and takes over again if the direct path dies.

// MigrateConfig tunes pipe migration.
type MigrateConfig struct {
	// Off keeps relayed pipes on the relay: connects do not ask peers for
	// resumable pipes. Peers' requests are still honoured.
	Off bool
	// Strategies are tried, in order, to move a relayed pipe (default:
	// every configured strategy but relay).
	Strategies []string
	// Window is how long after the relay won the attempts go on (default
	// 60 s); Retry the pause after a round without success, doubling
	// (default 2 s).
	Window, Retry time.Duration
	// Heartbeat and IdleTimeout are each path's ping interval and how long
	// a silent path lives (pkg/node/resume defaults: 1 s, 8 s).
	Heartbeat, IdleTimeout time.Duration
}

// Migration results in agent_pipe_migrations_total.
const (
	migrateOK      = "ok"
	migrateFailed  = "failed"
	migrateSkipped = "skipped"
)

// readyWait bounds the wait for the peer's go-ahead before an attempt.
const readyWait = 5 * time.Second

// expectTTL is how long an announced upgrade pipe id is honoured.
const expectTTL = time.Minute

type migrator struct {
	a      *Agent
	cfg    MigrateConfig
	total  *prometheus.CounterVec // agent_pipe_migrations_total{from,to,result}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	expect map[string]*session // upgrade pipe ids the peers announced
}

func newMigrator(a *Agent) (*migrator, error) {
	m := &migrator{a: a, cfg: a.cfg.Migrate, expect: map[string]*session{},
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agent_pipe_migrations_total",
			Help: "Moves of resumable (relay-won) pipes between paths, by the path left (from), the path taken (to) and result: ok, failed, skipped (the plan ruled the strategy out)."},
			[]string{"from", "to", "result"})}
	if m.cfg.Window <= 0 {
		m.cfg.Window = time.Minute
	}
	if m.cfg.Retry <= 0 {
		m.cfg.Retry = 2 * time.Second
	}
	if err := promreg.Register(a.cfg.Registry, "agent", m.total); err != nil {
		return nil, err
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// close stops the upgrade attempts and waits for them.
func (m *migrator) close() {
	m.cancel()
	m.wg.Wait()
}

// control is a migration control message on a resumable pipe.
type control struct {
	Op     string `json:"op"` // prepare (connecting side), ready (the peer)
	PipeID string `json:"pipe_id"`
}

// session is the migration state of one resumable pipe.
type session struct {
	m      *migrator
	rc     *resume.Conn
	peer   string
	to     peeraddr.Address // the peer's address (connecting side only)
	begin  time.Time        // when the connect began
	mu     sync.Mutex
	phases []node.Phase
	ready  map[string]chan struct{} // our announced attempts awaiting the go-ahead
	starts map[string]time.Time     // when the attempt of a path kind began
	down   map[string]error         // why a path died, by label
	paths  func() []resume.PathInfo // for Pipe.Paths
}

// newSession runs sc in the resumable layer. kind labels the first path.
func (m *migrator) newSession(sc *node.SecureConn, kind string, begin time.Time) *session {
	s := &session{m: m, peer: sc.RemoteNodeID(), begin: begin, ready: map[string]chan struct{}{},
		starts: map[string]time.Time{}, down: map[string]error{}}
	o := resume.Options{Heartbeat: m.cfg.Heartbeat, IdleTimeout: m.cfg.IdleTimeout, Log: m.a.cfg.Log,
		OnControl: s.onControl, OnEvent: s.onEvent}
	s.rc = resume.New(sc, kind, prio(kind), o)
	s.paths = s.rc.Paths
	return s
}

// prio ranks paths: anything direct above the relay.
func prio(kind string) int {
	if kind == node.KindRelay {
		return 0
	}
	return 1
}

func (s *session) addPhase(ph node.Phase) {
	s.mu.Lock()
	s.phases = append(s.phases, ph)
	s.mu.Unlock()
}

func (s *session) onControl(b []byte) {
	var c control
	if err := json.Unmarshal(b, &c); err != nil || c.PipeID == "" {
		s.m.a.cfg.Log.Info("migration: bad control message dropped", "peer", s.peer)
		return
	}
	switch c.Op {
	case "prepare":
		m := s.m
		m.mu.Lock()
		if len(m.expect) >= 1024 {
			m.mu.Unlock()
			return
		}
		m.expect[c.PipeID] = s
		m.mu.Unlock()
		time.AfterFunc(expectTTL, func() {
			m.mu.Lock()
			if m.expect[c.PipeID] == s {
				delete(m.expect, c.PipeID)
			}
			m.mu.Unlock()
		})
		msg, _ := json.Marshal(control{Op: "ready", PipeID: c.PipeID})
		_ = s.rc.SendControl(msg)
	case "ready":
		s.mu.Lock()
		ch, ok := s.ready[c.PipeID]
		delete(s.ready, c.PipeID)
		s.mu.Unlock()
		if ok {
			close(ch)
		}
	}
}

// claim attaches an inbound pipe a peer announced as an upgrade of one of
// our sessions; false for every other pipe.
func (m *migrator) claim(sc *node.SecureConn, h node.Hello) bool {
	m.mu.Lock()
	s, ok := m.expect[h.PipeID]
	if ok && s.peer == sc.RemoteNodeID() {
		delete(m.expect, h.PipeID)
	} else {
		ok = false
	}
	m.mu.Unlock()
	if !ok {
		return false
	}
	s.mu.Lock()
	if _, seen := s.starts[h.Kind]; !seen {
		s.starts[h.Kind] = time.Now().Add(-h.Handshake)
	}
	s.mu.Unlock()
	if err := s.rc.Attach(sc, h.Kind, prio(h.Kind)); err != nil {
		m.a.cfg.Log.Info("migration: upgrade pipe for a closed session", "peer", s.peer, "err", err)
	}
	return true
}

// onEvent turns path changes into report phases and metrics.
func (s *session) onEvent(e resume.Event) {
	now := time.Now()
	switch e.Type {
	case resume.EventDown:
		s.mu.Lock()
		s.down[e.Path] = e.Err
		s.mu.Unlock()
		s.m.a.cfg.Log.Info("pipe path down", "peer", s.peer, "path", e.Path, "left", e.Left, "err", e.Err)
		switch {
		case !e.Attached:
			// a path that never carried anything (a lost connect race,
			// an upgrade pipe that died at once): nothing moved
		case e.Left == 0:
			s.m.total.WithLabelValues(e.Path, "none", migrateFailed).Inc()
			s.addPhase(node.Phase{Strategy: "path " + e.Path + " lost, none left", Start: now.Sub(s.begin), Result: node.ResultFailed, Err: errString(e.Err)})
		case e.Path == node.KindRelay:
			s.addPhase(node.Phase{Strategy: "relay standby lost", Start: now.Sub(s.begin), Result: node.ResultFailed, Err: errString(e.Err)})
		}
	case resume.EventActive:
		if e.Prev == "" {
			return // the first path
		}
		s.m.total.WithLabelValues(e.Prev, e.Path, migrateOK).Inc()
		s.m.a.cfg.Log.Info("pipe moved", "peer", s.peer, "from", e.Prev, "to", e.Path)
		s.mu.Lock()
		var ph node.Phase
		if prio(e.Path) > prio(e.Prev) {
			start, ok := s.starts[e.Path]
			if !ok {
				start = now
			}
			ph = node.Phase{Strategy: "upgrade " + e.Path, Start: start.Sub(s.begin), Duration: now.Sub(start), Result: node.ResultOK}
		} else {
			ph = node.Phase{Strategy: "fallback " + e.Path, Start: now.Sub(s.begin), Result: node.ResultOK,
				Err: "path " + e.Prev + " died: " + errString(s.down[e.Prev])}
		}
		s.phases = append(s.phases, ph)
		s.mu.Unlock()
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// upgradeStrategies are the strategies a relayed pipe may move to.
func (m *migrator) upgradeStrategies() []string {
	if len(m.cfg.Strategies) > 0 {
		return m.cfg.Strategies
	}
	var out []string
	for _, n := range m.a.node.StrategyNames() {
		if n != node.KindRelay {
			out = append(out, n)
		}
	}
	return out
}

// start runs the upgrade attempts of a session we connected.
func (m *migrator) start(s *session) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithCancel(m.ctx)
		defer cancel()
		go func() {
			select {
			case <-s.rc.Done():
				cancel()
			case <-ctx.Done():
			}
		}()
		s.upgrade(ctx)
	}()
}

// upgrade tries the strategies in rounds until one gives a pipe, the
// window ends, or the plan rules every one out.
func (s *session) upgrade(ctx context.Context) {
	m := s.m
	until := time.Now().Add(m.cfg.Window)
	retry := m.cfg.Retry
	for round := 0; ; round++ {
		tried := false
		for _, name := range m.upgradeStrategies() {
			if why := m.a.node.PlanOf(s.to, name); why != "" {
				if round == 0 {
					m.total.WithLabelValues(node.KindRelay, name, migrateSkipped).Inc()
					s.addPhase(node.Phase{Strategy: "upgrade " + name, Start: time.Since(s.begin), Result: node.ResultSkipped, Err: why})
				}
				continue
			}
			tried = true
			ok, err := s.try(ctx, name)
			if ctx.Err() != nil {
				return
			}
			if ok {
				return
			}
			m.a.cfg.Log.Info("migration attempt failed", "peer", s.peer, "strategy", name, "err", err)
		}
		if !tried {
			return
		}
		if time.Now().Add(retry).After(until) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		retry *= 2
	}
}

// try announces one attempt to the peer, runs it and attaches its pipe.
func (s *session) try(ctx context.Context, name string) (bool, error) {
	m := s.m
	id := node.NewPipeID()
	ch := make(chan struct{})
	s.mu.Lock()
	s.ready[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.ready, id)
		s.mu.Unlock()
	}()
	start := time.Now()
	fail := func(err error) (bool, error) {
		m.total.WithLabelValues(node.KindRelay, name, migrateFailed).Inc()
		s.addPhase(node.Phase{Strategy: "upgrade " + name, Start: start.Sub(s.begin), Duration: time.Since(start), Result: node.ResultFailed, Err: err.Error()})
		return false, err
	}
	msg, _ := json.Marshal(control{Op: "prepare", PipeID: id})
	if err := s.rc.SendControl(msg); err != nil {
		return fail(err)
	}
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		return fail(errors.New("the peer did not answer the upgrade request over the pipe"))
	case <-ctx.Done():
		return false, ctx.Err()
	}
	s.mu.Lock()
	s.starts[name] = start
	s.mu.Unlock()
	sc, err := m.a.node.Try(ctx, s.to, name, id, 0)
	if err != nil {
		if ctx.Err() != nil {
			return false, err
		}
		return fail(err)
	}
	if err := s.rc.Attach(sc, name, prio(name)); err != nil {
		return fail(err)
	}
	return true, nil
}

// Path is the kind of path the pipe's data goes over now: the winner of
// its connect, or, for a resumable pipe, the path it moved to.
func (p *Pipe) Path() string {
	if p.mig == nil {
		return p.Kind
	}
	if a := p.mig.rc.Active(); a != "" {
		return a
	}
	return p.Kind
}

// Resumable reports whether the pipe runs in the resumable layer (a
// relay-won pipe between agents that both migrate).
func (p *Pipe) Resumable() bool { return p.mig != nil }

// Paths lists a resumable pipe's attached paths (nil for other pipes).
func (p *Pipe) Paths() []resume.PathInfo {
	if p.mig == nil {
		return nil
	}
	return p.mig.paths()
}

// FullReport is Report plus what happened to the pipe since: upgrade
// attempts, moves to a direct path and falls back to the relay.
func (p *Pipe) FullReport() node.Report {
	r := p.Report
	if p.mig == nil {
		return r
	}
	p.mig.mu.Lock()
	r.Phases = append(append([]node.Phase(nil), r.Phases...), p.mig.phases...)
	p.mig.mu.Unlock()
	return r
}
