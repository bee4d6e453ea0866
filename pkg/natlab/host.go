package natlab

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
)

// Host is one machine of the lab: a network namespace with addresses.
type Host struct {
	lab   *Lab
	name  string
	ns    string
	addrs []netip.Addr
}

// Name is the host's name as given to the lab.
func (h *Host) Name() string { return h.name }

// Namespace is the host's network namespace name (for `ip netns exec`).
func (h *Host) Namespace() string { return h.ns }

// Addrs lists the host's own addresses (WAN addresses for servers and open
// hosts, the private address for hosts behind a NAT).
func (h *Host) Addrs() []netip.Addr { return append([]netip.Addr(nil), h.addrs...) }

// IP4 is the host's first IPv4 address, or the zero Addr.
func (h *Host) IP4() netip.Addr { return h.first(false) }

// IP6 is the host's first IPv6 address, or the zero Addr.
func (h *Host) IP6() netip.Addr { return h.first(true) }

func (h *Host) first(v6 bool) netip.Addr {
	for _, a := range h.addrs {
		if a.Is6() == v6 {
			return a
		}
	}
	return netip.Addr{}
}

// Net returns a sock.Net whose sockets are created inside the host.
func (h *Host) Net() sock.Net { return nsNet{ns: h.ns} }

// Do runs fn on a thread inside the host's namespace. Sockets fn creates stay
// in the host; goroutines fn starts do not (use Net for those).
func (h *Host) Do(fn func() error) error { return doInNS(h.ns, fn) }

// Command returns a command that runs inside the host's namespace.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
}

// Proc is a background process running inside a host.
type Proc struct {
	cmd  *exec.Cmd
	out  *capBuffer
	done chan struct{}
	err  error
}

// Start runs a background process inside the host. It is stopped (SIGTERM,
// then SIGKILL after 5 s) when the test ends; its output is logged if the
// test failed.
func (h *Host) Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
	p := &Proc{cmd: cmd, out: &capBuffer{max: 1 << 20}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("natlab: start %s in %s: %v", name, h.name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("natlab: output of %s on %s:\n%s", name, h.name, p.Output())
		}
	})
	return p
}

// Pid is the process id (the program itself: ip netns exec replaces itself).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output is what the process printed so far (capped at 1 MiB).
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Kill sends SIGKILL and waits for the process to exit.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM, waits up to 5 s, then kills. It returns the exit error
// unless the process ended because of the signal.
func (p *Proc) Stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Kill()
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) && !ee.Exited() {
		return nil // ended by our signal
	}
	return p.err
}

// capBuffer is a goroutine-safe buffer that keeps at most max bytes.
type capBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *capBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *capBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
