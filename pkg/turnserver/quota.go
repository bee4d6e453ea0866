package turnserver

import (
	"errors"
	"sync"
	"time"
)

var (
	errUserQuota  = errors.New("turnserver: allocation quota of this user reached")
	errTotalQuota = errors.New("turnserver: server allocation limit reached")
)

// pendingTimeout is how long a reserved slot waits for pion's answer to the
// Allocate request before the slot is given back.
const pendingTimeout = 30 * time.Second

type allocRecord struct {
	user   string
	tuple  string
	relay  string
	active bool
	since  time.Time
}

// tracker counts allocations per user and in total. An Allocate request
// reserves a slot (keyed by its 5-tuple) before pion sees it; pion's success
// response activates the slot and names its relay address; closing that relay
// socket (expiry, release, TCP close) frees it.
type tracker struct {
	maxPerUser, maxTotal int
	m                    *Metrics

	mu      sync.Mutex
	byTuple map[string]*allocRecord
	byRelay map[string]*allocRecord
	perUser map[string]int
	total   int
	swept   time.Time
}

func newTracker(maxPerUser, maxTotal int, m *Metrics) *tracker {
	return &tracker{
		maxPerUser: maxPerUser, maxTotal: maxTotal, m: m,
		byTuple: map[string]*allocRecord{}, byRelay: map[string]*allocRecord{}, perUser: map[string]int{},
	}
}

// reserve takes a slot for user on tuple. A tuple that already holds a slot
// (a retransmitted Allocate, or one pion will answer with 437) passes.
func (t *tracker) reserve(tuple, user string, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	if _, ok := t.byTuple[tuple]; ok {
		return nil
	}
	if t.maxTotal > 0 && t.total >= t.maxTotal {
		return errTotalQuota
	}
	if t.maxPerUser > 0 && t.perUser[user] >= t.maxPerUser {
		return errUserQuota
	}
	t.byTuple[tuple] = &allocRecord{user: user, tuple: tuple, since: now}
	t.perUser[user]++
	t.total++
	return nil
}

// sweep frees pending slots pion never answered. Called with mu held.
func (t *tracker) sweep(now time.Time) {
	if now.Sub(t.swept) < pendingTimeout {
		return
	}
	t.swept = now
	for _, r := range t.byTuple {
		if !r.active && now.Sub(r.since) > pendingTimeout {
			t.drop(r)
		}
	}
}

// drop removes r. Called with mu held.
func (t *tracker) drop(r *allocRecord) {
	delete(t.byTuple, r.tuple)
	if r.relay != "" {
		delete(t.byRelay, r.relay)
	}
	t.perUser[r.user]--
	if t.perUser[r.user] <= 0 {
		delete(t.perUser, r.user)
	}
	t.total--
}

// activate records pion's success response for tuple.
func (t *tracker) activate(tuple, relay string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.byTuple[tuple]
	if !ok || r.active {
		return
	}
	r.active, r.relay = true, relay
	t.byRelay[relay] = r
	t.m.created.Inc()
	t.m.active.Inc()
}

// fail frees a pending slot after pion's error response.
func (t *tracker) fail(tuple string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.byTuple[tuple]; ok && !r.active {
		t.drop(r)
	}
}

// closed frees the slot whose relay socket closed.
func (t *tracker) closed(relay string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.byRelay[relay]
	if !ok {
		return
	}
	t.drop(r)
	t.m.expired.Inc()
	t.m.active.Dec()
}

// holds reports whether tuple has an allocation (pending or confirmed).
func (t *tracker) holds(tuple string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.byTuple[tuple]
	return ok
}
