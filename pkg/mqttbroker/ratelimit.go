package mqttbroker

import (
	"sync"
	"time"
)

// bucket is a token bucket: rate tokens per second, up to burst.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// take removes one token if there is one.
func (b *bucket) take(now time.Time, rate float64, burst int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = float64(burst)
	} else if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens += d * rate
		if b.tokens > float64(burst) {
			b.tokens = float64(burst)
		}
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// logThrottle lets one log line per kind through per interval and counts the
// rest, so a client hammering a limit cannot flood the log.
type logThrottle struct {
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
	dropped  map[string]int64
}

func newLogThrottle(interval time.Duration) *logThrottle {
	return &logThrottle{interval: interval, last: map[string]time.Time{}, dropped: map[string]int64{}}
}

// allow reports whether a line of kind may be logged now, and how many lines
// of that kind were suppressed since the last one.
func (t *logThrottle) allow(kind string, now time.Time) (bool, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.last[kind]) < t.interval {
		t.dropped[kind]++
		return false, 0
	}
	t.last[kind] = now
	n := t.dropped[kind]
	t.dropped[kind] = 0
	return true, n
}
