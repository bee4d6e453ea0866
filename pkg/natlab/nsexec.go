package natlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/p2pd-go/p2pd/internal/sock"
	"github.com/vishvananda/netns"
)

// doInNS runs fn on an OS thread switched into namespace name. Sockets and
// tun/tap devices created by fn belong to that namespace and keep working
// from any goroutine afterwards. Goroutines started by fn do NOT inherit the
// namespace.
func doInNS(name string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("natlab: current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("natlab: netns %s: %w", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("natlab: enter netns %s: %w", name, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		// This goroutine's thread is stuck in the lab namespace; going on
		// would open later sockets inside the lab. Nothing safe remains.
		panic(fmt.Sprintf("natlab: cannot leave netns %s: %v", name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// nsNet is a sock.Net whose sockets live in a lab namespace.
type nsNet struct{ ns string }

var _ sock.Net = nsNet{}

// literal refuses host names: resolving them would run on other goroutines,
// outside the namespace, and send DNS traffic from the host.
func literal(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("natlab: address %q: %w", address, err)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("natlab: address %q: lab sockets take IP literals only", address)
	}
	return nil
}

func (n nsNet) ListenPacket(ctx context.Context, network, address string) (pc net.PacketConn, err error) {
	if err := literal(address); err != nil {
		return nil, err
	}
	err = doInNS(n.ns, func() error {
		var lc net.ListenConfig
		pc, err = lc.ListenPacket(ctx, network, address)
		return err
	})
	return pc, err
}

func (n nsNet) Listen(ctx context.Context, network, address string) (ln net.Listener, err error) {
	if err := literal(address); err != nil {
		return nil, err
	}
	err = doInNS(n.ns, func() error {
		var lc net.ListenConfig
		ln, err = lc.Listen(ctx, network, address)
		return err
	})
	return ln, err
}

func (n nsNet) DialContext(ctx context.Context, network, address string) (c net.Conn, err error) {
	if err := literal(address); err != nil {
		return nil, err
	}
	err = doInNS(n.ns, func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Do runs fn on a thread inside the namespace (sock.Doer).
func (n nsNet) Do(fn func() error) error { return doInNS(n.ns, fn) }
