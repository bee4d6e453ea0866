//go:build unix

package sock

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func setOptions(fd uintptr, o Options) error {
	s := int(fd)
	for _, opt := range []struct {
		on    bool
		name  string
		level int
		key   int
		val   int
	}{
		{o.ReuseAddr, "SO_REUSEADDR", unix.SOL_SOCKET, unix.SO_REUSEADDR, 1},
		{o.ReusePort, "SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT, 1},
		{o.RecvBuffer > 0, "SO_RCVBUF", unix.SOL_SOCKET, unix.SO_RCVBUF, o.RecvBuffer},
		{o.SendBuffer > 0, "SO_SNDBUF", unix.SOL_SOCKET, unix.SO_SNDBUF, o.SendBuffer},
	} {
		if !opt.on {
			continue
		}
		if err := unix.SetsockoptInt(s, opt.level, opt.key, opt.val); err != nil {
			return fmt.Errorf("sock: set %s: %w", opt.name, err)
		}
	}
	return nil
}
