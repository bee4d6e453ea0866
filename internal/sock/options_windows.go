//go:build windows

package sock

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// setOptions on Windows: there is no SO_REUSEPORT, and SO_REUSEADDR lets
// another socket steal a bound port, so it is set only when asked for.
func setOptions(fd uintptr, o Options) error {
	h := windows.Handle(fd)
	if o.ReusePort {
		return ErrNoReusePort
	}
	if o.ReuseAddr {
		if err := windows.SetsockoptInt(h, windows.SOL_SOCKET, windows.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("sock: set SO_REUSEADDR: %w", err)
		}
	}
	if o.RecvBuffer > 0 {
		if err := windows.SetsockoptInt(h, windows.SOL_SOCKET, windows.SO_RCVBUF, o.RecvBuffer); err != nil {
			return fmt.Errorf("sock: set SO_RCVBUF: %w", err)
		}
	}
	if o.SendBuffer > 0 {
		if err := windows.SetsockoptInt(h, windows.SOL_SOCKET, windows.SO_SNDBUF, o.SendBuffer); err != nil {
			return fmt.Errorf("sock: set SO_SNDBUF: %w", err)
		}
	}
	return nil
}
