//go:build !unix

package config

import "time"

// processCPU is not measured here: Procs.Run then leaves GOMAXPROCS alone.
var processCPU func() time.Duration
