package api

import (
	"regexp"
	"testing"
)

// FuzzOptions feeds arbitrary request paths to the option parser: it must
// return options or an error, and accepted regexes must compile.
func FuzzOptions(f *testing.F) {
	f.Add("/p2p/recv/c1/msg_p/%5Eping/addr_p/10%5C.0/timeout/2.5")
	f.Add("/p2p/recv/c1/timeout")
	f.Add("/p2p/recv/%zz")
	f.Fuzz(func(t *testing.T, path string) {
		parts, err := splitPath(path, 3)
		if err != nil {
			return
		}
		o, err := parsePairs(parts)
		if err != nil {
			return
		}
		if o.timeout < 0 {
			t.Fatalf("negative timeout from %q", path)
		}
		_, _ = regexp.Compile(o.sub.Msg)
	})
}
