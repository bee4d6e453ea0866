//go:build !linux && !windows && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd

package portmap

import (
	"fmt"
	"net/netip"
	"runtime"
)

// defaultGateway has no routing-table reader on this platform.
func defaultGateway() (netip.Addr, error) {
	return netip.Addr{}, fmt.Errorf("%w: reading the routing table is not supported on %s", ErrNoGateway, runtime.GOOS)
}
