package config

import (
	"os"
	"runtime/debug"
)

// TuneGC sets the garbage collector's target to percent unless the
// environment sets GOGC, which then wins. Servers that allocate per packet
// or per delivery while their live heap stays small (turnd, mqttd) collect
// far too often at Go's default of 100; each program documents its value
// and the measurement behind it.
func TuneGC(percent int) {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(percent)
	}
}
