package node

import (
	"sync"
	"time"
)

// limiter is a token bucket per key, with a bounded number of keys (the
// least recently refilled are forgotten first when full).
type limiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	max     int
	buckets map[string]*bucket
	now     func() time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst, max int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), max: max, buckets: map[string]*bucket{}, now: time.Now}
}

// allow takes a token for key if one is left.
func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evict drops full buckets (they carry no state), else the oldest one.
func (l *limiter) evict(now time.Time) {
	var oldest string
	var oldestT time.Time
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
			continue
		}
		if oldest == "" || b.last.Before(oldestT) {
			oldest, oldestT = k, b.last
		}
	}
	if len(l.buckets) >= l.max && oldest != "" {
		delete(l.buckets, oldest)
	}
}
