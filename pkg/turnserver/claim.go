package turnserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"

	"github.com/p2pd-go/p2pd/internal/sock"
)

// errPortHeld is returned when another process holds the TURN port.
var errPortHeld = errors.New("turnserver: port in use by another process")

// claimUDP makes sure no other process serves network/addr before turnd
// binds its SO_REUSEPORT group there (SO_REUSEPORT lets any process of the
// same user join the group and take a share of the clients' datagrams).
//
// Two steps, both needed:
//   - a lock: an abstract unix socket named after the address, which only one
//     process can hold and the kernel frees when it exits (no stale lock
//     file). It keeps two turnds starting at the same moment apart.
//   - a probe: a bind of the address without SO_REUSEPORT, which fails while
//     any socket of any program (another turnd, coturn, stund) is bound to it.
//
// The returned closer releases the lock; it must stay open while the server runs.
func claimUDP(ctx context.Context, network, addr string) (io.Closer, error) {
	lock, err := lockName(ctx, "p2pd-turnd/"+network+"/"+addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s is claimed by another turnd", errPortHeld, network, addr)
	}
	probe, err := sock.ListenPacket(ctx, sock.Host, network, addr, sock.Options{})
	if err != nil {
		closeIf(lock)
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: %s %s: %w", errPortHeld, network, addr, err)
		}
		return nil, fmt.Errorf("turnserver: listen %s %s: %w", network, addr, err)
	}
	_ = probe.Close()
	return lock, nil
}

// lockName binds an abstract unix socket (Linux). Elsewhere it returns no lock.
func lockName(ctx context.Context, name string) (io.Closer, error) {
	if runtime.GOOS != "linux" {
		return nil, nil
	}
	var lc net.ListenConfig
	return lc.Listen(ctx, "unix", "@"+name)
}

func closeIf(c io.Closer) {
	if c != nil {
		_ = c.Close()
	}
}
