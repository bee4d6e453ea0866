package signal

import (
	"fmt"
	"time"

	"github.com/p2pd-go/p2pd/pkg/identity"
)

// replayCache remembers the nonces and (sender, pipe id, type) keys of
// accepted messages until they expire. It holds at most max entries; when it
// must forget an entry that has not yet expired, it remembers that entry's
// timestamp as a floor, and from then on refuses every message not newer than
// the floor, so evicting can never let a replay through (a flood can only
// cause refusals of old messages).
type replayCache struct {
	max     int
	entries map[string]time.Time // key -> expiry
	order   []replayEntry        // insertion order, for eviction
	floor   time.Time            // messages with ts <= floor are refused
}

type replayEntry struct {
	key string
	ts  time.Time
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, entries: make(map[string]time.Time)}
}

func (c *replayCache) check(now time.Time, m *Message, nonce [nonceSize]byte, ts, expires time.Time) error {
	c.prune(now)
	if !ts.After(c.floor) {
		return fmt.Errorf("%w: older than the replay cache reaches", ErrReplay)
	}
	nk := "n" + string(nonce[:])
	pk := "p" + string(m.From[:]) + string(m.Type) + "\x00" + m.PipeID
	if _, ok := c.entries[nk]; ok {
		return fmt.Errorf("%w: nonce repeated", ErrReplay)
	}
	if _, ok := c.entries[pk]; ok {
		return fmt.Errorf("%w: pipe_id %q type %s from %s repeated", ErrReplay, m.PipeID, m.Type, identity.NodeID(m.From))
	}
	c.add(nk, ts, expires)
	c.add(pk, ts, expires)
	return nil
}

func (c *replayCache) add(key string, ts, expires time.Time) {
	for len(c.entries) >= c.max && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		if _, ok := c.entries[old.key]; ok {
			delete(c.entries, old.key)
			if old.ts.After(c.floor) {
				c.floor = old.ts
			}
		}
	}
	c.entries[key] = expires
	c.order = append(c.order, replayEntry{key, ts})
}

// prune forgets expired entries at the head of the insertion order, and
// compacts the order slice when it has grown much larger than the map.
func (c *replayCache) prune(now time.Time) {
	for len(c.order) > 0 {
		e := c.order[0]
		exp, ok := c.entries[e.key]
		if ok && !now.After(exp) {
			break
		}
		if ok {
			delete(c.entries, e.key)
		}
		c.order = c.order[1:]
	}
	if cap(c.order) > 4*c.max && len(c.order) < c.max {
		c.order = append([]replayEntry(nil), c.order...)
	}
}
