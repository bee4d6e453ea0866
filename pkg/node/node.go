// Package node is the P2P node: it listens for pipes from peers, proves its
// identity on each (Noise IK, see secure.go), and opens pipes to peers by
// direct connect and reverse connect (asking the peer over signalling to
// connect back).
package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
	"github.com/p2pd-go/p2pd/pkg/signal"
)

// DefaultPort is the node listener's port unless configured.
const DefaultPort = 10001

// PortOptions are the socket options of the node listeners and of every
// socket that shares their port (STUN over TCP learning its mapping, punch
// dials): SO_REUSEADDR and SO_REUSEPORT where the platform has SO_REUSEPORT.
// On Windows neither is set: there SO_REUSEADDR would let another process
// take the bound port over, so nothing shares the node port.
func PortOptions() sock.Options {
	share := runtime.GOOS != "windows"
	return sock.Options{ReuseAddr: share, ReusePort: share}
}

// Signaller sends signalling messages (pkg/signal's Client).
type Signaller interface {
	SendTo(ctx context.Context, to peeraddr.Address, body signal.Body) error
}

// Config configures a Node.
type Config struct {
	Identity *identity.Identity
	// Listen are the listener addresses; default 0.0.0.0:DefaultPort (tcp4)
	// and [::]:DefaultPort (tcp6). Wildcards cover every route.
	Listen []string
	// Net creates sockets (sock.Host when nil).
	Net sock.Net
	// Signal sends CON requests for reverse connect; nil disables reverse.
	Signal Signaller
	// Address returns this node's current peer address (for CON requests and
	// same-router detection).
	Address func() (peeraddr.Address, error)
	// OnPipe receives inbound pipes (direct or reverse) after the handshake.
	// The receiver owns the pipe and must not block (hand it to another
	// goroutine). Nil closes them.
	OnPipe func(*SecureConn, Hello)
	// Timeouts per strategy and for handshakes (defaults 4 s, 10 s, 5 s).
	DirectTimeout, ReverseTimeout, HandshakeTimeout time.Duration
	// Extra are strategies run after the built-in direct and reverse, in
	// priority order (pkg/agent adds punch and relay). Names must differ.
	Extra []Strategy
	// Delays are the staggered start of each strategy by name (default
	// DefaultDelay); the first strategy that runs always starts at once.
	Delays map[string]time.Duration
	// Deadlines bound each strategy by name (default: DirectTimeout,
	// ReverseTimeout, else 10 s).
	Deadlines map[string]time.Duration
	// MaxHandshakes bounds concurrent inbound handshakes (default 64), and
	// MaxHandshakesPerIP those from one source address (default 8).
	MaxHandshakes, MaxHandshakesPerIP int
	// MaxConnectBacks bounds concurrent connect-backs for CON requests
	// (default 16); ConBurst and ConRate limit CONs per sending node
	// (default 5 at once, then 1 per second).
	MaxConnectBacks int
	ConBurst        int
	ConRate         float64
	Metrics         *Metrics
	Log             *slog.Logger
}

// Node listens for and opens pipes.
type Node struct {
	cfg     Config
	lns     []net.Listener
	sem     chan struct{}
	backs   chan struct{} // connect-back slots
	mu      sync.Mutex
	waiters map[string]waiter // reverse connects awaiting the peer, by pipe id
	perIP   map[netip.Addr]int
	cons    *limiter // CON rate per sending node
	closed  bool
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
	// strategies are direct, reverse, then Config.Extra.
	strategies []Strategy
	claims     []*claim // punches awaiting raw connections (claim.go)
}

type waiter struct {
	peer string
	ch   chan *SecureConn
}

// New checks cfg and fills defaults.
func New(cfg Config) (*Node, error) {
	if cfg.Identity == nil {
		return nil, errors.New("node: config needs an Identity")
	}
	if cfg.Net == nil {
		cfg.Net = sock.Host
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{fmt.Sprintf("0.0.0.0:%d", DefaultPort), fmt.Sprintf("[::]:%d", DefaultPort)}
	}
	if cfg.DirectTimeout <= 0 {
		cfg.DirectTimeout = 4 * time.Second
	}
	if cfg.ReverseTimeout <= 0 {
		cfg.ReverseTimeout = 10 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = 64
	}
	if cfg.MaxHandshakesPerIP <= 0 {
		cfg.MaxHandshakesPerIP = 8
	}
	if cfg.MaxConnectBacks <= 0 {
		cfg.MaxConnectBacks = 16
	}
	if cfg.ConBurst <= 0 {
		cfg.ConBurst = 5
	}
	if cfg.ConRate <= 0 {
		cfg.ConRate = 1
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	n := &Node{cfg: cfg, sem: make(chan struct{}, cfg.MaxHandshakes), backs: make(chan struct{}, cfg.MaxConnectBacks),
		waiters: map[string]waiter{}, perIP: map[netip.Addr]int{}, cons: newLimiter(cfg.ConRate, cfg.ConBurst, 4096)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.strategies = append([]Strategy{directStrategy{n}, reverseStrategy{n}}, cfg.Extra...)
	seen := map[string]bool{}
	for _, s := range n.strategies {
		if seen[s.Name()] {
			return nil, fmt.Errorf("node: two strategies named %q", s.Name())
		}
		seen[s.Name()] = true
	}
	return n, nil
}

// ID is the node id.
func (n *Node) ID() string { return identity.NodeID(n.cfg.Identity.Public) }

// Start opens the listeners. It fails only if none could be opened.
func (n *Node) Start(ctx context.Context) error {
	var errs []error
	for _, a := range n.cfg.Listen {
		network := "tcp4"
		if host, _, err := net.SplitHostPort(a); err == nil && len(host) > 0 && containsColon(host) {
			network = "tcp6"
		}
		// Shared with SO_REUSEPORT, so a punch and STUN over TCP can leave
		// from the node port while the listener holds it.
		ln, err := sock.Listen(ctx, n.cfg.Net, network, a, PortOptions())
		if err != nil {
			errs = append(errs, err)
			n.cfg.Log.Warn("node listener not opened", "addr", a, "err", err)
			continue
		}
		n.lns = append(n.lns, ln)
		n.wg.Add(1)
		go n.acceptLoop(ln)
	}
	if len(n.lns) == 0 {
		return fmt.Errorf("node: no listener could be opened: %w", errors.Join(errs...))
	}
	return nil
}

func containsColon(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return true
		}
	}
	return false
}

// Addrs lists the listeners' addresses.
func (n *Node) Addrs() []net.Addr {
	out := make([]net.Addr, 0, len(n.lns))
	for _, ln := range n.lns {
		out = append(out, ln.Addr())
	}
	return out
}

// Close stops the listeners and waits for handshakes in progress.
func (n *Node) Close() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	for _, ln := range n.lns {
		ln.Close()
	}
	n.wg.Wait()
	return nil
}

func (n *Node) acceptLoop(ln net.Listener) {
	defer n.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if n.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			n.cfg.Log.Warn("node accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if n.claimed(c) {
			continue
		}
		ip := remoteIP(c)
		if !n.takeSlot(ip) {
			n.cfg.Metrics.Handshakes.WithLabelValues("busy").Inc()
			c.Close()
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.inbound(c, ip)
		}()
	}
}

func remoteIP(c net.Conn) netip.Addr {
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap.Addr().Unmap()
}

// takeSlot reserves a handshake slot, globally and for the source address.
func (n *Node) takeSlot(ip netip.Addr) bool {
	select {
	case n.sem <- struct{}{}:
	default:
		return false
	}
	if !ip.IsValid() { // not from a listener: global limit only
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.perIP[ip] >= n.cfg.MaxHandshakesPerIP {
		<-n.sem
		return false
	}
	n.perIP[ip]++
	return true
}

func (n *Node) releaseSlot(ip netip.Addr) {
	if !ip.IsValid() {
		<-n.sem
		return
	}
	n.mu.Lock()
	if n.perIP[ip]--; n.perIP[ip] <= 0 {
		delete(n.perIP, ip)
	}
	n.mu.Unlock()
	<-n.sem
}

// inbound authenticates an accepted connection and routes it: to a waiting
// reverse connect, or to the application. The handshake slot is released
// before the pipe is handed on.
func (n *Node) inbound(c net.Conn, ip netip.Addr) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.HandshakeTimeout)
	start := time.Now()
	sc, hello, err := Accept(ctx, c, n.cfg.Identity)
	hello.Handshake = time.Since(start)
	cancel()
	n.releaseSlot(ip)
	if err != nil {
		n.cfg.Metrics.Handshakes.WithLabelValues("failed").Inc()
		n.cfg.Log.Info("inbound pipe refused", "remote", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	n.cfg.Metrics.Handshakes.WithLabelValues("ok").Inc()
	if hello.Kind != KindDirect {
		n.mu.Lock()
		w, ok := n.waiters[hello.PipeID]
		if ok && w.peer == sc.RemoteNodeID() {
			delete(n.waiters, hello.PipeID)
			w.ch <- sc // buffered and under n.mu: the waiter drains it on timeout
			n.mu.Unlock()
			return
		}
		n.mu.Unlock()
	}
	n.cfg.Metrics.Inbound.Inc()
	if n.cfg.OnPipe == nil {
		sc.Close()
		return
	}
	n.cfg.OnPipe(sc, hello)
}

// newPipeID returns 15 random characters, like P2PD's pipe ids.
func newPipeID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var b [15]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}
