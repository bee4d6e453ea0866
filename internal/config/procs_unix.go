//go:build unix

package config

import (
	"syscall"
	"time"
)

// processCPU is the process's user + system time so far.
var processCPU = func() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
