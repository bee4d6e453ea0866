package stun

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// limiter is a per-source-IP token bucket, sharded to keep lock contention
// low. A source's bucket holds up to burst tokens and refills at rate per
// second. When a shard is full (a flood of spoofed sources), new sources are
// refused until idle entries are swept.
type limiter struct {
	rate   float64
	burst  float64
	seed   maphash.Seed
	shards [64]limitShard
	max    int // entries per shard
}

type limitShard struct {
	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int, maxSources int) *limiter {
	if rate <= 0 {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	l := &limiter{rate: rate, burst: float64(burst), seed: maphash.MakeSeed(), max: maxSources/64 + 1}
	for i := range l.shards {
		l.shards[i].buckets = make(map[netip.Addr]*bucket)
	}
	return l
}

// allow takes one token for src; a nil limiter allows everything.
func (l *limiter) allow(src netip.Addr, now time.Time) bool {
	if l == nil {
		return true
	}
	b := src.As16()
	sh := &l.shards[maphash.Bytes(l.seed, b[:])%uint64(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	bk := sh.buckets[src]
	if bk == nil {
		if len(sh.buckets) >= l.max {
			return false
		}
		bk = &bucket{tokens: l.burst, last: now}
		sh.buckets[src] = bk
	}
	bk.tokens += now.Sub(bk.last).Seconds() * l.rate
	if bk.tokens > l.burst {
		bk.tokens = l.burst
	}
	bk.last = now
	if bk.tokens < 1 {
		return false
	}
	bk.tokens--
	return true
}

// sweep forgets sources whose bucket has been full for a while.
func (l *limiter) sweep(now time.Time) {
	if l == nil {
		return
	}
	idle := time.Duration(l.burst/l.rate*float64(time.Second)) + time.Second
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, b := range sh.buckets {
			if now.Sub(b.last) > idle {
				delete(sh.buckets, k)
			}
		}
		sh.mu.Unlock()
	}
}
