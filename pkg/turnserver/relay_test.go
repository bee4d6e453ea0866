package turnserver

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type step struct {
		at   time.Duration
		n    int
		want bool
	}
	tests := []struct {
		name  string
		rate  int64
		steps []step
	}{
		{"burst is one second", 10000, []step{{0, 6000, true}, {0, 4000, true}, {0, 1, false}}},
		{"refills at the rate", 10000, []step{{0, 10000, true}, {100 * time.Millisecond, 1000, true}, {100 * time.Millisecond, 1, false}, {200 * time.Millisecond, 1000, true}}},
		{"refill capped at burst", 10000, []step{{0, 10000, true}, {time.Hour, 10000, true}, {time.Hour, 1, false}}},
		{"small rate still passes a full datagram", 100, []step{{0, 1500, true}, {0, 1, false}, {15 * time.Second, 1500, true}}},
		{"too big never passes", 100, []step{{0, 1501, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBucket(tc.rate)
			for i, s := range tc.steps {
				if got := b.take(s.n, t0.Add(s.at)); got != s.want {
					t.Fatalf("step %d: take(%d) at +%v = %v, want %v", i, s.n, s.at, got, s.want)
				}
			}
		})
	}
}
