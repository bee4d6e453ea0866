package node

// RateLimiter is a token bucket per key (a sending node id) with a bounded
// number of keys, for strategies that act on peers' signalling messages as
// the node does on CONs.
type RateLimiter struct{ l *limiter }

// NewRateLimiter allows burst messages per key at once, then rate per
// second, remembering at most max keys.
func NewRateLimiter(rate float64, burst, max int) *RateLimiter {
	return &RateLimiter{l: newLimiter(rate, burst, max)}
}

// Allow takes a token for key if one is left.
func (r *RateLimiter) Allow(key string) bool { return r.l.allow(key) }
