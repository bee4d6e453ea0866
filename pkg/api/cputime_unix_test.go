//go:build unix

package api

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) this process has used: the
// agents of a benchmark run in it, so this is what their work costs.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
