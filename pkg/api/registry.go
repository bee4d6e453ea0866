package api

import (
	"fmt"
	"sync"
	"time"

	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/node"
)

// con is a named pipe.
type con struct {
	name    string
	pipe    *agent.Pipe
	report  node.Report
	inbound bool
	opened  time.Time
	claimed bool // taken by /p2p/accept (registry.mu)
}

// maxGone is how many closed names the registry remembers, so a call on
// one says "closed" rather than "no connection named".
const maxGone = 256

// registry holds the named pipes; a pipe leaves it when it closes.
type registry struct {
	mu       sync.Mutex
	cons     map[string]*con
	pending  map[string]bool   // names being opened
	gone     map[string]string // closed names -> why
	goneFIFO []string
	nextIn   int
	closed   bool   // after closeAll, new pipes are closed at once
	changed  func() // called after a pipe is added or removed
}

func newRegistry(changed func()) *registry {
	if changed == nil {
		changed = func() {}
	}
	return &registry{cons: map[string]*con{}, pending: map[string]bool{}, gone: map[string]string{}, changed: changed}
}

// reserve claims a name for an open in progress.
func (r *registry) reserve(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cons[name] != nil || r.pending[name] {
		return false
	}
	r.pending[name] = true
	return true
}

func (r *registry) release(name string) {
	r.mu.Lock()
	delete(r.pending, name)
	r.mu.Unlock()
}

// add stores a pipe under a reserved name.
func (r *registry) add(c *con) {
	r.mu.Lock()
	delete(r.pending, c.name)
	if r.closed {
		r.mu.Unlock()
		c.pipe.Close()
		return
	}
	r.cons[c.name] = c
	r.forget(c.name)
	r.mu.Unlock()
	r.changed()
	c.pipe.OnClose(func(err error) {
		why := "the peer closed it"
		if err != nil {
			why = err.Error()
		}
		r.removeWhy(c.name, c, why)
	})
}

// forget drops a name from the closed list (r.mu held).
func (r *registry) forget(name string) {
	if _, ok := r.gone[name]; !ok {
		return
	}
	delete(r.gone, name)
	for i, n := range r.goneFIFO {
		if n == name {
			r.goneFIFO = append(r.goneFIFO[:i], r.goneFIFO[i+1:]...)
			break
		}
	}
}

// closedWhy says why a name that is no longer open was closed.
func (r *registry) closedWhy(name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	why, ok := r.gone[name]
	return why, ok
}

func (r *registry) addInbound(p *agent.Pipe) *con {
	r.mu.Lock()
	var name string
	for {
		r.nextIn++
		name = fmt.Sprintf("in%d", r.nextIn)
		if r.cons[name] == nil && !r.pending[name] {
			break
		}
	}
	r.pending[name] = true
	r.mu.Unlock()
	c := &con{name: name, pipe: p, inbound: true, opened: time.Now(), report: p.Report}
	r.add(c)
	return c
}

func (r *registry) get(name string) *con {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cons[name]
}

func (r *registry) remove(name string, c *con) { r.removeWhy(name, c, "closed through the API") }

func (r *registry) removeWhy(name string, c *con, why string) {
	r.mu.Lock()
	if r.cons[name] != c {
		r.mu.Unlock()
		return
	}
	delete(r.cons, name)
	r.forget(name)
	r.gone[name] = why
	r.goneFIFO = append(r.goneFIFO, name)
	if len(r.goneFIFO) > maxGone {
		delete(r.gone, r.goneFIFO[0])
		r.goneFIFO = r.goneFIFO[1:]
	}
	r.mu.Unlock()
	r.changed()
}

func (r *registry) all() []*con {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*con, 0, len(r.cons))
	for _, c := range r.cons {
		out = append(out, c)
	}
	return out
}

func (r *registry) closeAll() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	for _, c := range r.all() {
		c.pipe.Close()
	}
}

// claim marks an inbound connection as taken by an accept; false if it
// was taken already or is closed.
func (r *registry) claim(c *con) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.claimed || r.cons[c.name] != c {
		return false
	}
	c.claimed = true
	return true
}

// claimOldest takes the oldest open inbound connection no accept has taken.
func (r *registry) claimOldest() *con {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *con
	for _, c := range r.cons {
		if c.inbound && !c.claimed && (best == nil || c.opened.Before(best.opened)) {
			best = c
		}
	}
	if best != nil {
		best.claimed = true
	}
	return best
}

// unclaim gives a claimed connection back.
func (r *registry) unclaim(c *con) {
	r.mu.Lock()
	c.claimed = false
	r.mu.Unlock()
}
