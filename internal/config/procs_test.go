package config

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

func TestProcsNext(t *testing.T) {
	p := &Procs{Min: 1, Max: 4, Set: func(int) int { return 4 }}
	p.defaults()
	tests := []struct {
		name  string
		procs int
		cores float64
		want  int
	}{
		{"idle stays at the minimum", 1, 0.05, 1},
		{"busy one P gets a second", 1, 0.8, 2},
		{"between the thresholds nothing moves", 2, 0.9, 2},
		{"two busy Ps get a third", 2, 1.6, 3},
		{"the maximum is kept", 4, 3.9, 4},
		{"load that fits one P fewer loses one", 3, 0.9, 2},
		{"just above the lower threshold stays", 3, 1.01, 3},
		{"the minimum is kept", 1, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.next(tt.procs, tt.cores); got != tt.want {
				t.Fatalf("next(%d, %.2f) = %d, want %d", tt.procs, tt.cores, got, tt.want)
			}
		})
	}
}

// TestProcsRun drives Run with a CPU clock that reports two busy cores and
// then none: it must start at Min, climb to Max and come back down.
func TestProcsRun(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // restores the variable afterwards
	if err := os.Unsetenv("GOMAXPROCS"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var cpu time.Duration
	var sets []int
	busy := true
	start := time.Now()
	p := &Procs{
		Min: 1, Max: 2, Interval: time.Millisecond,
		CPUTime: func() time.Duration {
			mu.Lock()
			defer mu.Unlock()
			if busy { // two cores' worth of CPU since the last look
				cpu = 2 * time.Since(start)
			}
			return cpu
		},
		Set: func(n int) int {
			mu.Lock()
			defer mu.Unlock()
			sets = append(sets, n)
			if n == 2 {
				busy = false
			}
			return 0
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	deadline := time.After(10 * time.Second) // bounds a broken test only
	for {
		mu.Lock()
		n := len(sets)
		mu.Unlock()
		if n >= 3 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("GOMAXPROCS set to %v; want 1, 2, 1", sets)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	<-done
	if sets[0] != 1 || sets[1] != 2 || sets[2] != 1 {
		t.Fatalf("GOMAXPROCS set to %v; want 1, 2, 1", sets)
	}
	if last := sets[len(sets)-1]; last != 0 { // Set returned 0: what was there before Run
		t.Fatalf("GOMAXPROCS left at %d when Run ended, want it given back (0)", last)
	}
}

func TestProcsRespectsEnvironment(t *testing.T) {
	t.Setenv("GOMAXPROCS", "3")
	called := false
	p := &Procs{Set: func(int) int { called = true; return 3 }, CPUTime: func() time.Duration { return 0 }}
	p.Run(context.Background()) // returns at once
	if called {
		t.Fatal("Run changed GOMAXPROCS although the environment sets it")
	}
}
