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
}

// registry holds the named pipes; a pipe leaves it when it closes.
type registry struct {
	mu      sync.Mutex
	cons    map[string]*con
	pending map[string]bool // names being opened
	nextIn  int
	closed  bool // after closeAll, new pipes are closed at once
}

func newRegistry() *registry {
	return &registry{cons: map[string]*con{}, pending: map[string]bool{}}
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
	r.mu.Unlock()
	c.pipe.OnClose(func(error) { r.remove(c.name, c) })
}

func (r *registry) addInbound(p *agent.Pipe) string {
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
	r.add(&con{name: name, pipe: p, inbound: true, opened: time.Now(), report: node.Report{Winner: p.Kind}})
	return name
}

func (r *registry) get(name string) *con {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cons[name]
}

func (r *registry) remove(name string, c *con) {
	r.mu.Lock()
	if r.cons[name] == c {
		delete(r.cons, name)
	}
	r.mu.Unlock()
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
