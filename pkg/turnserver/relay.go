package turnserver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
)

// relayReadBuffer is the receive buffer asked for on each relay socket (the
// kernel caps it at net.core.rmem_max).
const relayReadBuffer = 1 << 20

var errTCPRelay = errors.New("turnserver: TCP relay allocations (RFC 6062) are not supported")

// relayGen is pion's RelayAddressGenerator: it opens relay sockets in the
// configured port range and wraps them so the server can count traffic,
// apply the bandwidth cap, re-check the peer policy on every send and learn
// when an allocation ends.
type relayGen struct {
	nw        sock.Net
	bind      netip.Addr // address relay sockets bind to
	advertise netip.Addr // address put in XOR-RELAYED-ADDRESS
	minPort   int
	maxPort   int
	bandwidth int64 // bytes/s per direction per allocation; 0 = no cap
	f         *filter
	batch     *batchGroup  // nil: relay sockets unbatched
	poller    *relayPoller // nil: each relay socket is read by pion's goroutine alone
	live      livePorts
}

// livePorts are the ports of the relay sockets open now.
type livePorts struct {
	mu    sync.Mutex
	m     map[uint16]int
	conns map[uint16]*relayConn
}

// open records rc as the relay socket on its port.
func (l *livePorts) open(rc *relayConn) {
	l.add(rc.port, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		l.conns = map[uint16]*relayConn{}
	}
	l.conns[rc.port] = rc
}

// closed forgets rc.
func (l *livePorts) closed(rc *relayConn) {
	l.add(rc.port, -1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns[rc.port] == rc {
		delete(l.conns, rc.port)
	}
}

// conn is the open relay socket on port (nil: none).
func (g *relayGen) conn(port uint16) *relayConn {
	g.live.mu.Lock()
	defer g.live.mu.Unlock()
	return g.live.conns[port]
}

func (l *livePorts) add(port uint16, d int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[uint16]int{}
	}
	if l.m[port] += d; l.m[port] <= 0 {
		delete(l.m, port)
	}
}

// has reports whether a relay socket is open on port.
func (l *livePorts) has(port uint16) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[port] > 0
}

func (g *relayGen) Validate() error {
	switch {
	case !g.bind.IsValid() || !g.advertise.IsValid():
		return errors.New("turnserver: relay bind and advertised addresses must be set")
	case g.minPort < 1 || g.maxPort > 65535 || g.minPort > g.maxPort:
		return fmt.Errorf("turnserver: bad relay port range %d-%d", g.minPort, g.maxPort)
	}
	return nil
}

func (g *relayGen) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	ports := []int{requestedPort}
	if requestedPort == 0 {
		span := g.maxPort - g.minPort + 1
		ports = ports[:0]
		for range min(span, 64) {
			ports = append(ports, g.minPort+rand.IntN(span))
		}
	}
	var lastErr error
	for _, port := range ports {
		addr := net.JoinHostPort(g.bind.String(), strconv.Itoa(port))
		c, err := g.nw.ListenPacket(context.Background(), network, addr)
		if err != nil {
			lastErr = err
			continue
		}
		if u, ok := c.(*net.UDPConn); ok {
			// Room for bursts while the relay goroutine waits to be scheduled
			// (the default holds only a few hundred small datagrams).
			_ = u.SetReadBuffer(relayReadBuffer)
			c = batched(u, g.batch, relayBatch, false)
		}
		rc := &relayConn{
			PacketConn: c,
			f:          g.f,
			key:        netip.AddrPortFrom(g.advertise.Unmap(), uint16(port)).String(),
			port:       uint16(port),
			live:       &g.live,
			poller:     g.poller,
			stop:       make(chan struct{}),
		}
		g.live.open(rc)
		if g.bandwidth > 0 {
			rc.out, rc.in = newBucket(g.bandwidth), newBucket(g.bandwidth)
		}
		return rc, &net.UDPAddr{IP: g.advertise.Unmap().AsSlice(), Port: port}, nil
	}
	return nil, nil, fmt.Errorf("turnserver: no free relay port in %d-%d: %w", g.minPort, g.maxPort, lastErr)
}

func (g *relayGen) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errTCPRelay
}

var errPeerRefused = errors.New("turnserver: peer address refused by policy")

// relayConn is one allocation's relay socket.
type relayConn struct {
	net.PacketConn
	f       *filter
	key     string
	port    uint16
	live    *livePorts
	in, out *bucket
	allowed atomic.Pointer[netip.AddrPort] // last destination the policy allowed
	once    sync.Once
	closed  atomic.Bool

	// The channels that relay to the client without pion (channels.go).
	binds   atomic.Pointer[[]*binding]
	bmu     sync.Mutex
	closers []func()

	// Once the socket has a binding, the poller reads it (relaypoll_linux.go)
	// and pion's goroutine gets only what the bindings do not cover.
	poller   *relayPoller
	wantPoll atomic.Bool // set with a binding; pion's goroutine hands over
	polled   bool        // handed over (pion's goroutine only)
	slow     chan slowDatagram
	stop     chan struct{} // closed by Close
}

// slowDatagram is one the poller hands to pion's goroutine.
type slowDatagram struct {
	b    []byte
	from netip.AddrPort
}

// slowQueue is how many datagrams the poller holds for pion's goroutine of
// one socket; more are dropped as a full socket buffer would drop them.
const slowQueue = 256

// onClose runs fn when rc closes (at once if it has).
func (c *relayConn) onClose(fn func()) {
	c.bmu.Lock()
	if !c.closed.Load() {
		c.closers = append(c.closers, fn)
		c.bmu.Unlock()
		return
	}
	c.bmu.Unlock()
	fn()
}

func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errPeerRefused
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok || ua.Port < 0 || ua.Port > 65535 {
		return 0, errPeerRefused
	}
	ap := netip.AddrPortFrom(ip, uint16(ua.Port))
	if last := c.allowed.Load(); last == nil || *last != ap {
		r, viaRelay := c.f.policy.checkSend(ap)
		if r != "" {
			c.f.m.denials.WithLabelValues(r).Inc()
			return 0, fmt.Errorf("%w (%s)", errPeerRefused, r)
		}
		if !viaRelay { // a relay port stays open only while its allocation lives
			last := ap // a copy: &ap would move ap to the heap on every call
			c.allowed.Store(&last)
		}
	}
	if c.out != nil && !c.out.take(len(p), time.Now()) {
		c.f.m.dropped.Inc()
		return len(p), nil
	}
	// Counted before the write so a peer's answer can never be seen first.
	c.f.m.pktsPeer.Inc()
	c.f.m.bytesPeer.Add(float64(len(p)))
	return c.PacketConn.WriteTo(p, addr)
}

func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		if c.polled {
			return c.readSlow(p)
		}
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && c.wantPoll.Load() {
				c.handOver()
				continue
			}
			return n, addr, err
		}
		if c.in != nil && !c.in.take(n, time.Now()) {
			c.f.m.dropped.Inc()
			continue
		}
		if ua, ok := addr.(*net.UDPAddr); !ok || !c.toClient(p[:n], unmap(ua.AddrPort())) {
			return n, addr, nil
		}
	}
}

// startPolling asks pion's goroutine to hand the socket to the poller: the
// deadline ends the read it waits in.
func (c *relayConn) startPolling() {
	if c.poller == nil || c.wantPoll.Swap(true) {
		return
	}
	if u, ok := c.PacketConn.(*batchConn); ok {
		_ = u.SetReadDeadline(time.Unix(1, 0))
	}
}

// handOver runs in pion's goroutine, which no longer reads the socket:
// it leaves Go's poller (batchConn.detach) and goes to the relay poller.
func (c *relayConn) handOver() {
	if u, ok := c.PacketConn.(*batchConn); ok {
		_ = u.SetReadDeadline(time.Time{})
		u.detach()
	}
	c.slow = make(chan slowDatagram, slowQueue)
	c.polled = c.poller.add(c)
}

// readSlow waits for a datagram the poller could not relay itself.
func (c *relayConn) readSlow(p []byte) (int, net.Addr, error) {
	select {
	case d := <-c.slow:
		return copy(p, d.b), net.UDPAddrFromAddrPort(d.from), nil
	default:
	}
	// Nothing waiting: what pion wrote from here goes out before it waits,
	// as batchConn.ReadFrom does.
	c.f.batch.flush()
	select {
	case d := <-c.slow:
		return copy(p, d.b), net.UDPAddrFromAddrPort(d.from), nil
	case <-c.stop:
		return 0, nil, fmt.Errorf("turnserver: read: %w", net.ErrClosed)
	}
}

// received is one datagram the poller read from the socket.
func (c *relayConn) received(b []byte, from netip.AddrPort) {
	if c.in != nil && !c.in.take(len(b), time.Now()) {
		c.f.m.dropped.Inc()
		return
	}
	if c.toClient(b, unmap(from)) {
		return
	}
	select {
	case c.slow <- slowDatagram{append([]byte(nil), b...), from}:
	default:
		c.f.m.handoffDropped.Inc()
	}
}

func (c *relayConn) Close() error {
	c.once.Do(func() {
		c.bmu.Lock()
		c.closed.Store(true)
		closers := c.closers
		c.closers = nil
		c.bmu.Unlock()
		for _, fn := range closers {
			fn()
		}
		c.poller.remove(c)
		if c.stop != nil {
			close(c.stop)
		}
		c.f.tracker.closed(c.key)
		if c.live != nil {
			c.live.closed(c)
		}
	})
	return c.PacketConn.Close()
}

// bucket is a token bucket in bytes; the burst is one second of traffic (at
// least one full-size datagram).
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate int64) *bucket {
	burst := max(float64(rate), 1500)
	return &bucket{rate: float64(rate), burst: burst, tokens: burst}
}

// take spends n bytes if the bucket holds them.
func (b *bucket) take(n int, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
