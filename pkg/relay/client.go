package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// Client holds the standing allocation and the streams on it.
type Client struct {
	cfg        Config
	m          *metrics
	serverTLS  *tls.Config
	clientTLS  *tls.Config
	qconf      *quic.Config
	accepted   chan *Conn
	changed    chan struct{} // closed and replaced whenever cur changes
	done       chan struct{}
	wg         sync.WaitGroup
	startOnce  sync.Once
	closeOnce  sync.Once
	mu         sync.Mutex
	cur        *allocation
	lastErr    error
	firstRound chan struct{} // closed after the first allocation round
}

// New checks cfg and builds a Client; Start makes the allocation.
func New(cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	st, ct, err := quicTLS()
	if err != nil {
		return nil, err
	}
	return &Client{
		cfg: cfg, m: m, serverTLS: st, clientTLS: ct, qconf: quicConfig(cfg.IdleTimeout),
		accepted: make(chan *Conn, 16), changed: make(chan struct{}), done: make(chan struct{}),
		firstRound: make(chan struct{}),
	}, nil
}

// Start makes the standing allocation and keeps it until Close: refreshed
// every KeepAlive, made again (with backoff, servers in order) after it is
// lost. It returns once the first allocation exists, or after the first
// round over every server failed with an error naming each server, transport
// and cause; the client keeps trying in the background either way. ctx
// bounds only the wait, not the allocation.
func (c *Client) Start(ctx context.Context) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	started := false
	c.startOnce.Do(func() {
		started = true
		c.wg.Add(1)
		go c.run()
	})
	if !started {
		return errors.New("relay: Start called twice")
	}
	select {
	case <-c.firstRound:
	case <-ctx.Done():
		return fmt.Errorf("relay: waiting for the first allocation: %w", ctx.Err())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.cur != nil:
		return nil
	case c.lastErr != nil:
		return c.lastErr
	}
	return ErrClosed // closed during the first round
}

// stableAfter is how long an allocation must have lived for its loss to be
// retried at once with the backoff reset.
const stableAfter = 30 * time.Second

// run is the allocation loop.
func (c *Client) run() {
	defer c.wg.Done()
	backoff := c.cfg.RetryMin
	first, hadOne := true, false
	for {
		a, err := c.round()
		if errors.Is(err, ErrClosed) {
			if first {
				close(c.firstRound)
			}
			return
		}
		c.m.allocations.WithLabelValues(result(err)).Inc()
		if err == nil {
			if hadOne {
				c.m.reallocations.Inc()
			}
			hadOne = true
			c.set(a, nil)
			c.cfg.Log.Info("relay: allocated", "server", a.at.addr, "transport", a.at.transport, "relay", a.addr.String())
			c.wg.Add(1)
			go c.acceptLoop(a)
		} else {
			c.set(nil, err)
			c.cfg.Log.Warn("relay: no allocation", "err", err, "retry_in", backoff.String())
		}
		if first {
			first = false
			close(c.firstRound)
		}
		if a != nil {
			select {
			case <-a.done:
				c.m.losses.Inc()
				c.set(nil, a.endErr)
				age := c.cfg.Now().Sub(a.born)
				c.cfg.Log.Warn("relay: allocation lost", "err", a.endErr, "age", age.Round(time.Second).String())
				if age >= stableAfter {
					// Retry at once: the server is likely fine (a restart,
					// a new NAT mapping); backoff applies if that fails.
					backoff = c.cfg.RetryMin
					continue
				}
				// Lost soon after it was made: back off, or a server that
				// keeps dropping allocations would be hammered.
			case <-c.done:
				a.release()
				c.set(nil, ErrClosed)
				return
			}
		}
		jitter := time.Duration(rand.Int64N(int64(backoff)/4 + 1))
		select {
		case <-time.After(backoff + jitter):
		case <-c.done:
			return
		}
		backoff = min(2*backoff, c.cfg.RetryMax)
	}
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (c *Client) set(a *allocation, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur, c.lastErr = a, err
	v := 0.0
	if a != nil {
		v = 1
	}
	c.m.active.Set(v)
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Client) current() (*allocation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return nil, ErrClosed
	default:
	}
	if c.cur == nil {
		if c.lastErr != nil {
			return nil, &prefixed{msg: ErrNoAllocation.Error() + ": " + strings.TrimPrefix(c.lastErr.Error(), "relay: "), cause: errors.Join(ErrNoAllocation, c.lastErr)}
		}
		return nil, ErrNoAllocation
	}
	return c.cur, nil
}

// RelayAddr is the current relayed transport address, false while there is
// no allocation.
func (c *Client) RelayAddr() (netip.AddrPort, bool) {
	a, err := c.current()
	if err != nil {
		return netip.AddrPort{}, false
	}
	return a.addr, true
}

// Transport is the transport to the TURN server in use ("udp", "tcp" or
// "tls"), "" while there is no allocation.
func (c *Client) Transport() string {
	a, err := c.current()
	if err != nil {
		return ""
	}
	return a.at.transport
}

// Changed returns a channel closed at the next change of the allocation
// (made, lost, closed): when RelayAddr may differ, e.g. to tell peers.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Permit lets the peers' relay addresses send to our allocation (TURN
// CreatePermission). Call it before the peer sends; repeating it is harmless
// (it refreshes the permissions). Permissions belong to the allocation: after
// a re-allocation, permit the peers' (new) addresses again.
func (c *Client) Permit(ctx context.Context, peers ...netip.AddrPort) error {
	if len(peers) == 0 {
		return nil
	}
	a, err := c.current()
	if err != nil {
		return err
	}
	addrs := make([]net.Addr, 0, len(peers))
	for _, p := range peers {
		if !p.IsValid() || p.Port() == 0 {
			return fmt.Errorf("relay: permit: %v is not a transport address", p)
		}
		addrs = append(addrs, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.Addr().Unmap(), p.Port())))
	}
	res := make(chan error, 1)
	go func() {
		var err error
		// pion answers a 438 (stale nonce) with "try again" after taking
		// the new nonce.
		for try := 0; try < 3; try++ {
			if err = a.tc.CreatePermission(addrs...); err == nil || err.Error() != "try again" {
				break
			}
		}
		res <- err
	}()
	select {
	case err := <-res:
		if err != nil {
			return fmt.Errorf("relay: permit %v on %s: %w", peers, a.at.addr, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("relay: permit %v: %w", peers, ctx.Err())
	case <-a.done:
		return wrapf(a.endErr, "permit %v", peers)
	}
}

// Dial opens a reliable ordered stream to the peer's relay address over our
// allocation. The peer must have Permitted our relay address (ours is
// permitted for it by the first packet sent).
func (c *Client) Dial(ctx context.Context, peer netip.AddrPort) (net.Conn, error) {
	if !peer.IsValid() || peer.Port() == 0 {
		return nil, fmt.Errorf("relay: dial: %v is not a transport address", peer)
	}
	a, err := c.current()
	if err != nil {
		return nil, err
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	conn, err := dial(ctx, a, net.UDPAddrFromAddrPort(peer), c.clientTLS, c.qconf, c.cfg.IdleTimeout)
	c.m.streams.WithLabelValues("dial", result(err)).Inc()
	if err != nil {
		if lost := a.lost(); lost != nil {
			return nil, wrapf(lost, "dial %s from %s", peer, a.addr)
		}
		var idle *quic.IdleTimeoutError
		var hs *quic.HandshakeTimeoutError
		if errors.As(err, &idle) || errors.As(err, &hs) {
			return nil, fmt.Errorf("relay: dial %s from %s: no answer (has the peer permitted %s?): %w", peer, a.addr, a.addr, err)
		}
		return nil, fmt.Errorf("relay: dial %s from %s: %w", peer, a.addr, err)
	}
	return conn, nil
}

// Accept returns the next stream a peer opened to our relay address. It
// keeps working across re-allocations.
func (c *Client) Accept(ctx context.Context) (net.Conn, error) {
	select {
	case conn := <-c.accepted:
		return conn, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("relay: accept: %w", ctx.Err())
	case <-c.done:
		return nil, ErrClosed
	}
}

// acceptLoop takes the QUIC connections peers open to allocation a.
func (c *Client) acceptLoop(a *allocation) {
	defer c.wg.Done()
	for {
		qc, err := a.ln.Accept(context.Background())
		if err != nil {
			// Normally the allocation ended; if the QUIC transport died on
			// its own, the allocation is useless: end it so a new one is made.
			a.end(fmt.Errorf("quic transport: %w", err), false)
			return
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := acceptStream(ctx, a, qc, c.cfg.IdleTimeout)
			c.m.streams.WithLabelValues("accept", result(err)).Inc()
			if err != nil {
				c.cfg.Log.Debug("relay: incoming stream failed", "err", err)
				return
			}
			select {
			case c.accepted <- conn:
			case <-ctx.Done():
				// Nobody accepts: refuse rather than hold it forever.
				_ = qc.CloseWithError(codeRefused, "not accepted")
				c.cfg.Log.Warn("relay: incoming stream refused: Accept is not being called")
			case <-c.done:
				_ = qc.CloseWithError(codeRefused, "closing")
			}
		}()
	}
}

// Close releases the allocation (Refresh with lifetime 0) and closes every
// stream. It waits for the release.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.wg.Wait()
		for {
			select {
			case conn := <-c.accepted:
				_ = conn.Abort(codeRefused, "closing")
			default:
				return
			}
		}
	})
	return nil
}
