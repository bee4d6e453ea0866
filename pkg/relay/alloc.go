package relay

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v2"
	"github.com/pion/transport/v3"
	"github.com/pion/transport/v3/stdnet"
	"github.com/pion/turn/v3"
	"github.com/quic-go/quic-go"

	"github.com/p2pd-go/p2pd/internal/pionlog"
)

// allocation is one TURN allocation with the QUIC transport on its relayed
// address. It ends by release (Close) or loss (refresh failed, server
// connection closed); either way every stream on it fails.
type allocation struct {
	cfg    *Config
	m      *metrics
	at     attempt
	server netip.AddrPort // resolved server address
	sock   net.PacketConn // to the server: a UDP socket or pion's STUNConn over TCP/TLS
	tc     *turn.Client
	addr   netip.AddrPort // relayed transport address
	born   time.Time

	mu        sync.Mutex     // guards the three below, set once allocated
	relayConn net.PacketConn // pion's relayed conn
	qt        *quic.Transport
	ln        *quic.Listener

	nonceMu sync.Mutex
	nonce   stun.Nonce

	done     chan struct{} // closed when the allocation has ended
	endOnce  sync.Once
	endErr   error // set before done is closed: why it ended (wraps ErrAllocationLost on loss)
	released bool
}

// allocate makes an allocation through one server attempt.
func allocate(ctx context.Context, cfg *Config, m *metrics, at attempt, tlsBase *tls.Config, qtls *tls.Config, qconf *quic.Config) (*allocation, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	server, err := resolve(ctx, at.addr)
	if err != nil {
		return nil, err
	}
	a := &allocation{cfg: cfg, m: m, at: at, server: server, done: make(chan struct{}), born: cfg.Now()}
	if a.sock, err = dialServer(ctx, cfg, at, server, tlsBase); err != nil {
		return nil, err
	}
	tnet, err := stdnet.NewNet()
	if err != nil {
		_ = a.sock.Close()
		return nil, fmt.Errorf("relay: %w", err)
	}
	a.tc, err = turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server.String(), TURNServerAddr: server.String(),
		Username: cfg.Username, Password: cfg.Password, Conn: a.sock,
		Net: anyFamily{tnet}, LoggerFactory: pionlog.Factory{Log: cfg.Log},
	})
	if err != nil {
		_ = a.sock.Close()
		return nil, fmt.Errorf("relay: turn client: %w", err)
	}
	go a.readLoop()
	// pion's Allocate takes no context: run it aside and tear the client
	// down (which fails its pending transactions) when ctx ends first.
	type result struct {
		pc  net.PacketConn
		err error
	}
	res := make(chan result, 1)
	go func() {
		pc, err := a.tc.Allocate()
		res <- result{pc, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		a.end(errors.New("allocate timed out"), false)
		if r = <-res; r.err == nil {
			_ = r.pc.Close()
		}
		return nil, fmt.Errorf("relay: allocate: no answer: %w", ctx.Err())
	}
	if r.err != nil {
		a.end(r.err, false)
		return nil, fmt.Errorf("relay: allocate: %w", r.err)
	}
	ua, ok := r.pc.LocalAddr().(*net.UDPAddr)
	if !ok {
		_ = r.pc.Close()
		a.end(errors.New("relayed address is not UDP"), false)
		return nil, errors.New("relay: relayed address is not UDP")
	}
	a.addr = netip.AddrPortFrom(ua.AddrPort().Addr().Unmap(), ua.AddrPort().Port())
	qt := &quic.Transport{Conn: &packetConn{PacketConn: r.pc, m: m}}
	ln, err := qt.Listen(qtls, qconf)
	if err != nil {
		_ = r.pc.Close()
		a.end(err, false)
		return nil, fmt.Errorf("relay: quic listen: %w", err)
	}
	a.mu.Lock()
	a.relayConn, a.qt, a.ln = r.pc, qt, ln
	a.mu.Unlock()
	select {
	case <-a.done: // the server connection died meanwhile
		_, _ = ln.Close(), qt.Close()
		_ = r.pc.Close()
		return nil, fmt.Errorf("relay: allocate: %w", a.endErr)
	default:
	}
	go a.keepAlive()
	return a, nil
}

// resolve turns host:port into an address (IP literals need no lookup).
func resolve(ctx context.Context, addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("relay: server %q: %w", addr, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("relay: resolve %q: %w", host, err)
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(ips[0].Unmap().String(), port))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("relay: server %q: %w", addr, err)
	}
	return ap, nil
}

// dialServer opens the socket to the server for the attempt's transport.
func dialServer(ctx context.Context, cfg *Config, at attempt, server netip.AddrPort, tlsBase *tls.Config) (net.PacketConn, error) {
	switch at.transport {
	case UDP:
		network, local := "udp4", "0.0.0.0:0"
		if server.Addr().Is6() {
			network, local = "udp6", "[::]:0"
		}
		pc, err := cfg.Net.ListenPacket(ctx, network, local)
		if err != nil {
			return nil, fmt.Errorf("relay: udp socket: %w", err)
		}
		if u, ok := pc.(*net.UDPConn); ok {
			// Bulk transfers through the relay arrive in bursts; the kernel
			// may cap these, which is harmless.
			_ = u.SetReadBuffer(4 << 20)
			_ = u.SetWriteBuffer(4 << 20)
		}
		return pc, nil
	case TCP, TLS:
		c, err := cfg.Net.DialContext(ctx, "tcp", server.String())
		if err != nil {
			return nil, fmt.Errorf("relay: connect: %w", err)
		}
		if at.transport == TCP {
			return turn.NewSTUNConn(c), nil
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if tlsBase != nil {
			tc = tlsBase.Clone()
		}
		tc.ServerName = at.serverName
		t := tls.Client(c, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("relay: tls handshake: %w", err)
		}
		return turn.NewSTUNConn(t), nil
	}
	return nil, fmt.Errorf("relay: unknown transport %q", at.transport)
}

// anyFamily lets pion resolve IPv6 server addresses: pion/turn v3 asks for
// "udp4" whatever the address is.
type anyFamily struct{ transport.Net }

func (n anyFamily) ResolveUDPAddr(_, address string) (*net.UDPAddr, error) {
	return n.Net.ResolveUDPAddr("udp", address)
}

// readLoop feeds what the server sends to pion. It replaces pion's own
// Listen loop, which stops for good at the first datagram it cannot parse;
// here a bad datagram is counted and dropped. Over UDP only datagrams from
// the server are taken (anything else could inject "relayed" data).
func (a *allocation) readLoop() {
	buf := make([]byte, 65536)
	for {
		n, from, err := a.sock.ReadFrom(buf)
		if err != nil {
			a.end(fmt.Errorf("connection to the server: %w", err), false)
			return
		}
		if a.at.transport == UDP {
			u, ok := from.(*net.UDPAddr)
			if !ok || u.AddrPort().Addr().Unmap() != a.server.Addr() || u.AddrPort().Port() != a.server.Port() {
				a.m.dropped.WithLabelValues("foreign").Inc()
				continue
			}
		}
		if handled, err := a.tc.HandleInbound(buf[:n], from); err != nil || !handled {
			a.m.dropped.WithLabelValues("malformed").Inc()
			a.cfg.Log.Debug("relay: dropped datagram from the TURN server", "err", err)
		}
	}
}

// keepAlive refreshes the allocation every KeepAlive until it ends. A
// refresh that fails ends the allocation: the server lost it (437, e.g. after
// a restart), does not answer, or refuses the credentials.
func (a *allocation) keepAlive() {
	t := time.NewTicker(a.cfg.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-a.done:
			return
		case <-t.C:
		}
		err := a.refresh(a.cfg.Lifetime)
		a.m.refreshes.WithLabelValues(result(err)).Inc()
		if err != nil {
			a.end(fmt.Errorf("refresh: %w", err), false)
			return
		}
	}
}

// lifetimeAttr is the LIFETIME attribute (RFC 5766 section 14.2).
type lifetimeAttr time.Duration

func (l lifetimeAttr) AddTo(m *stun.Message) error {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, uint32(time.Duration(l)/time.Second))
	m.Add(stun.AttrLifetime, v)
	return nil
}

// refresh sends an authenticated Refresh with the given lifetime (0
// releases). A 401 or 438 answer carries a fresh nonce and is retried.
func (a *allocation) refresh(lifetime time.Duration) error {
	realm := a.tc.Realm()
	integrity := stun.NewLongTermIntegrity(a.cfg.Username, realm.String(), a.cfg.Password)
	for try := 0; try < 3; try++ {
		a.nonceMu.Lock()
		nonce := a.nonce
		a.nonceMu.Unlock()
		username := stun.NewUsername(a.cfg.Username)
		msg, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
			lifetimeAttr(lifetime), &username, &realm, &nonce, integrity, stun.Fingerprint)
		if err != nil {
			return fmt.Errorf("relay: build refresh: %w", err)
		}
		res, err := a.tc.PerformTransaction(msg, a.tc.TURNServerAddr(), false)
		if err != nil {
			return fmt.Errorf("no answer from %s: %w", a.server, err)
		}
		if res.Msg.Type.Class != stun.ClassErrorResponse {
			return nil
		}
		var code stun.ErrorCodeAttribute
		if err := code.GetFrom(res.Msg); err != nil {
			return fmt.Errorf("error response without a code")
		}
		if code.Code == stun.CodeStaleNonce || code.Code == stun.CodeUnauthorized {
			var n stun.Nonce
			if err := n.GetFrom(res.Msg); err == nil {
				a.nonceMu.Lock()
				a.nonce = n
				a.nonceMu.Unlock()
				if try < 2 {
					continue
				}
			}
		}
		return fmt.Errorf("server answered %d %s", code.Code, strings.TrimSpace(string(code.Reason)))
	}
	return errors.New("server kept refusing the nonce")
}

// release gives the allocation back (Refresh with lifetime 0) and closes it.
func (a *allocation) release() {
	select {
	case <-a.done:
		return
	default:
	}
	// A dead server would keep pion retransmitting for half a minute:
	// wait briefly, then close regardless (the allocation then expires).
	res := make(chan error, 1)
	go func() { res <- a.refresh(0) }()
	select {
	case err := <-res:
		if err != nil {
			a.cfg.Log.Debug("relay: release", "server", a.at.addr, "err", err)
		}
	case <-time.After(2 * time.Second):
		a.cfg.Log.Debug("relay: release: no answer", "server", a.at.addr)
	}
	a.end(ErrClosed, true)
}

// end closes everything once. cause is why; a loss (release false) is
// reported to streams wrapped in ErrAllocationLost.
func (a *allocation) end(cause error, release bool) {
	a.endOnce.Do(func() {
		a.released = release
		if release {
			a.endErr = cause
		} else {
			a.endErr = fmt.Errorf("%w: %s over %s: %v", ErrAllocationLost, a.at.addr, a.at.transport, cause)
		}
		close(a.done)
		a.mu.Lock()
		ln, qt, rc := a.ln, a.qt, a.relayConn
		a.mu.Unlock()
		if ln != nil {
			_ = ln.Close()
		}
		if qt != nil {
			_ = qt.Close()
		}
		if rc != nil {
			_ = rc.Close() // pion sends one more lifetime-0 Refresh; harmless
		}
		a.tc.Close()
		_ = a.sock.Close()
	})
}

// lost returns the loss error once the allocation was lost, else nil.
func (a *allocation) lost() error {
	select {
	case <-a.done:
		if !a.released {
			return a.endErr
		}
		return nil
	default:
		return nil
	}
}
