package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/pipe"
)

// Event stream limits.
const (
	maxStreams     = 16               // concurrent /p2p/events clients
	streamInterval = time.Second      // how often counters are re-checked
	keepAlive      = 15 * time.Second // comment line when nothing changed
	maxFailures    = 20               // recent failed connects kept
)

// hub wakes event streams when connections come or go.
type hub struct {
	mu      sync.Mutex
	waiters map[chan struct{}]bool
}

func newHub() *hub { return &hub{waiters: map[chan struct{}]bool{}} }

func (h *hub) changed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// join registers a stream; it fails when maxStreams are open.
func (h *hub) join() (chan struct{}, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.waiters) >= maxStreams {
		return nil, false
	}
	ch := make(chan struct{}, 1)
	h.waiters[ch] = true
	return ch, true
}

func (h *hub) leave(ch chan struct{}) {
	h.mu.Lock()
	delete(h.waiters, ch)
	h.mu.Unlock()
}

// failure is a connect that did not succeed.
type failure struct {
	Time   time.Time   `json:"time"`
	Name   string      `json:"name"`
	Target string      `json:"target"`
	Error  string      `json:"error"`
	Phases []phaseJSON `json:"phases"`
}

// failures keeps the most recent failed connects.
type failures struct {
	mu     sync.Mutex
	list   []failure
	notify func()
}

func (f *failures) add(name, target, msg string, rep node.Report) {
	f.mu.Lock()
	f.list = append(f.list, failure{Time: time.Now().UTC(), Name: name, Target: target, Error: msg, Phases: phases(rep)})
	if len(f.list) > maxFailures {
		f.list = f.list[len(f.list)-maxFailures:]
	}
	f.mu.Unlock()
	if f.notify != nil {
		f.notify()
	}
}

func (f *failures) all() []failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]failure, len(f.list))
	copy(out, f.list)
	return out
}

// phaseJSON is one connect phase, rendered generically: whatever phases a
// report has are shown by name, duration and error.
type phaseJSON struct {
	Name       string  `json:"name"`
	StartMS    float64 `json:"start_ms"`
	DurationMS float64 `json:"duration_ms"`
	Result     string  `json:"result,omitempty"`
	Error      string  `json:"error,omitempty"`
}

func phases(rep node.Report) []phaseJSON {
	out := []phaseJSON{}
	for _, p := range rep.Phases {
		out = append(out, phaseJSON{Name: p.Strategy, StartMS: ms(p.Start), DurationMS: ms(p.Duration), Result: p.Result, Error: p.Err})
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// snapshot is one /p2p/events "status" event and the status page's model.
type snapshot struct {
	Version  string               `json:"version"`
	NodeID   string               `json:"node_id"`
	Addr     string               `json:"addr"`
	AddrErr  string               `json:"addr_error,omitempty"`
	Ifs      []ifJSON             `json:"ifs"`
	Brokers  []agent.BrokerStatus `json:"brokers"`
	STUN     []agent.STUNStatus   `json:"stun"`
	PortMap  *agent.PortMapStatus `json:"port_mapping"`
	Cons     []conJSON            `json:"cons"`
	Failures []failure            `json:"failures"`
}

type ifJSON struct {
	Name      string        `json:"name"`
	Offset    int           `json:"offset"`
	IsDefault bool          `json:"is_default"`
	NAT       netif.NAT     `json:"nat"`
	NAT6      *netif.NAT    `json:"nat6,omitempty"`
	Routes    []netif.Route `json:"routes"`
}

type conJSON struct {
	Name     string      `json:"name"`
	Peer     string      `json:"peer"`
	Inbound  bool        `json:"inbound"`
	Strategy string      `json:"strategy"`
	Path     string      `json:"path,omitempty"` // where data goes now (pipe migration)
	Phases   []phaseJSON `json:"phases"`
	Opened   time.Time   `json:"opened"`
	Local    string      `json:"laddr"`
	Remote   string      `json:"raddr"`
	Stats    pipe.Stats  `json:"stats"`
}

// statusSource is what *agent.Agent offers beyond Backend.
type statusSource interface{ Status() agent.Status }

func (s *Server) snapshot() snapshot {
	b := s.cfg.Backend
	snap := snapshot{Version: s.cfg.Version, NodeID: b.ID(), Ifs: []ifJSON{}, Cons: []conJSON{},
		Brokers: []agent.BrokerStatus{}, STUN: []agent.STUNStatus{}, Failures: s.failures.all()}
	if a, err := b.Address(); err == nil {
		snap.Addr = a.String()
	} else {
		snap.AddrErr = err.Error()
	}
	for _, ifc := range b.Interfaces() {
		ij := ifJSON{Name: ifc.Name, Offset: ifc.Index, NAT: ifc.NAT, NAT6: ifc.NAT6, Routes: []netif.Route{},
			IsDefault: ifc.IsDefault[netif.AF4] || ifc.IsDefault[netif.AF6]}
		for _, af := range []int{netif.AF4, netif.AF6} {
			for _, r := range ifc.Routes[af] {
				r.AF = af
				ij.Routes = append(ij.Routes, r)
			}
		}
		snap.Ifs = append(snap.Ifs, ij)
	}
	if src, ok := b.(statusSource); ok {
		st := src.Status()
		snap.Brokers, snap.STUN, snap.PortMap = st.Brokers, st.STUN, &st.PortMap
	}
	for _, cn := range s.cons.all() {
		snap.Cons = append(snap.Cons, conJSON{Name: cn.name, Peer: cn.pipe.Peer, Inbound: cn.inbound,
			Strategy: cn.report.Winner, Path: cn.pipe.Path(), Phases: phases(cn.pipe.FullReport()), Opened: cn.opened.UTC(),
			Local: cn.pipe.Local.String(), Remote: cn.pipe.RemoteAddr().String(), Stats: cn.pipe.Stats()})
	}
	sort.Slice(snap.Cons, func(i, j int) bool { return snap.Cons[i].Name < snap.Cons[j].Name })
	return snap
}

// eventStream streams the agent's state as server-sent events: an event
// "status" with the whole snapshot (JSON) at once and whenever anything in
// it changes (checked on every connection change and once a second).
func (s *Server) eventStream(c echo.Context) error {
	wake, ok := s.events.join()
	if !ok {
		return fail(c, errTimeout, fmt.Sprintf("too many event streams (at most %d)", maxStreams))
	}
	defer s.events.leave(wake)
	w := c.Response()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ctx := c.Request().Context()
	tick := time.NewTicker(streamInterval)
	defer tick.Stop()
	var last []byte
	quiet := time.Now()
	for {
		b, err := json.Marshal(s.snapshot())
		if err != nil {
			return nil
		}
		switch {
		case !bytes.Equal(b, last):
			if _, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", b); err != nil {
				return nil
			}
			last, quiet = b, time.Now()
		case time.Since(quiet) >= keepAlive:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			quiet = time.Now()
		}
		w.Flush()
		select {
		case <-ctx.Done():
			return nil
		case <-s.ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
		}
	}
}
