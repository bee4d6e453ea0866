package config

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"time"
)

// Procs sets GOMAXPROCS from the process's own CPU use instead of leaving
// it at the CPU count. The UDP servers spend most of their time in the
// kernel and, below saturation, most of the rest waking up: with a second
// P idle, every goroutine that becomes ready starts another thread
// spinning, which then parks again, so a 40,000-echo turnd flood made
// 3-5x the context switches and used 1.4x the CPU with GOMAXPROCS=2 than
// with 1 on a 2-core host (docs/benchmarks.md). Procs starts at Min and
// adds a P when the process keeps the ones it has busy, and takes one away
// when it needs fewer, checking every Interval.
//
// When the GOMAXPROCS environment variable is set, Run leaves it alone. It
// adds at most one P per Interval, so a large host under a sudden load takes
// a few seconds to reach its CPU count; Max is read once, at start.
type Procs struct {
	Min      int           // fewest Ps; default 1
	Max      int           // most Ps; default GOMAXPROCS at start (the CPU count or the container's CPU limit)
	Interval time.Duration // how often the load is checked; default 1s
	Up       float64       // add a P when CPU use is at least Up × Ps; default 0.75
	Down     float64       // remove one when it is at most Down × (Ps − 1); default 0.5

	CPUTime func() time.Duration // the process's user + system time; default getrusage (Unix)
	Set     func(int) int        // sets GOMAXPROCS, returning the old value; default runtime.GOMAXPROCS
	Log     *slog.Logger         // changes at debug level; nil: none
}

func (p *Procs) defaults() {
	if p.Set == nil {
		p.Set = runtime.GOMAXPROCS
	}
	if p.Max <= 0 {
		p.Max = p.Set(0)
	}
	if p.Min <= 0 {
		p.Min = 1
	}
	p.Min = min(p.Min, p.Max)
	if p.Interval <= 0 {
		p.Interval = time.Second
	}
	if p.Up <= 0 {
		p.Up = 0.75
	}
	if p.Down <= 0 {
		p.Down = 0.5
	}
	if p.CPUTime == nil {
		p.CPUTime = processCPU
	}
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
}

// next is the number of Ps for a process that used cores CPUs' worth of
// time over the last interval with procs Ps.
func (p *Procs) next(procs int, cores float64) int {
	switch {
	case procs < p.Max && cores >= p.Up*float64(procs):
		return procs + 1
	case procs > p.Min && cores <= p.Down*float64(procs-1):
		return procs - 1
	}
	return procs
}

// Run adjusts GOMAXPROCS until ctx ends; it returns at once when the
// environment sets GOMAXPROCS, or where the process's CPU time is not
// known (Windows) and none is given.
func (p *Procs) Run(ctx context.Context) {
	if _, set := os.LookupEnv("GOMAXPROCS"); set || (p.CPUTime == nil && processCPU == nil) {
		return
	}
	p.defaults()
	procs := p.Min
	defer p.Set(p.Set(procs)) // given back as it was when ctx ends
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	last, at := p.CPUTime(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			used := p.CPUTime()
			cores := float64(used-last) / float64(now.Sub(at))
			last, at = used, now
			if n := p.next(procs, cores); n != procs {
				p.Log.Debug("GOMAXPROCS changed", "from", procs, "to", n, "cores_used", cores)
				procs = n
				p.Set(n)
			}
		}
	}
}

// ApplyProcs is a server's --procs flag: n > 0 fixes GOMAXPROCS at n, 0
// starts a Procs adapting it until ctx ends. The environment's GOMAXPROCS
// wins either way.
func ApplyProcs(ctx context.Context, n int, log *slog.Logger) {
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		return
	}
	if n > 0 {
		runtime.GOMAXPROCS(n)
		return
	}
	p := &Procs{Log: log}
	go p.Run(ctx)
}
