package punch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
	"github.com/p2pd-go/p2pd/pkg/nat"
	"github.com/p2pd-go/p2pd/pkg/quicpipe"
	"github.com/p2pd-go/p2pd/pkg/stun"
	"github.com/quic-go/quic-go"
)

// The UDP punch: each side opens a UDP socket for the punch and learns its
// mapping by STUN from that socket; the offers carry those mappings (or a
// symmetric NAT's predicted next ports). At the meeting time both send a
// few small punch datagrams to every target of the peer's, which open
// their NATs for each other. The QUIC client (Initiator) then dials the
// endpoint a punch datagram came from; the other side accepts on the same
// socket. The stream carries the node's Noise handshake like a TCP punch.
// QUIC, STUN and punch datagrams share the socket: quic-go hands datagrams
// whose first two bits are 0 (STUN, punch) to ReadNonQUICPacket.

// ALPN is the QUIC application protocol of punched pipes.
const ALPN = "p2pd-punch"

// Defaults of UDPConfig.
const (
	DefaultUDPBurst  = 5
	DefaultUDPGap    = 30 * time.Millisecond
	DefaultUDPWindow = 6 * time.Second
	// udpKeepPunching spaces the punch datagrams after the first burst:
	// a peer whose clock is off still meets one.
	udpKeepPunching = 250 * time.Millisecond
	// punchMagic starts every punch datagram: a first byte of 0 keeps it
	// off quic-go's QUIC path; the pipe id follows.
	punchMagic  = "\x00p2pd-punch\x00"
	maxDatagram = 1500
)

// ErrQuiet is ErrNoConnection when UDPConfig.Quiet passed without a punch
// datagram from the peer.
var ErrQuiet = fmt.Errorf("%w: nothing heard from the peer", ErrNoConnection)

// UDPSocket is one punch's UDP socket with its QUIC transport.
type UDPSocket struct {
	pc   net.PacketConn
	tr   *quic.Transport
	once sync.Once
}

// ListenUDP opens a punch socket on local (port 0: any).
func ListenUDP(ctx context.Context, n sock.Net, local netip.AddrPort) (*UDPSocket, error) {
	if n == nil {
		n = sock.Host
	}
	network := "udp4"
	if local.Addr().Is6() {
		network = "udp6"
	}
	pc, err := n.ListenPacket(ctx, network, local.String())
	if err != nil {
		return nil, fmt.Errorf("punch: udp socket: %w", err)
	}
	return &UDPSocket{pc: pc, tr: &quic.Transport{Conn: pc}}, nil
}

// LocalAddr is the socket's address.
func (s *UDPSocket) LocalAddr() netip.AddrPort {
	if a, ok := s.pc.LocalAddr().(*net.UDPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// Close closes the transport, its QUIC connections and the socket.
func (s *UDPSocket) Close() error {
	var err error
	s.once.Do(func() {
		_ = s.tr.Close()
		err = s.pc.Close()
	})
	return err
}

// Mapping asks the servers in turn, by STUN from this socket, for its
// external mapping (the first answer wins).
func (s *UDPSocket) Mapping(ctx context.Context, servers []netip.AddrPort) (netip.AddrPort, error) {
	nq := newNonQUIC(s)
	c := stun.NewConn(nq, 0)
	defer c.Close() // stops the reader, not the socket
	var errs []error
	for _, srv := range servers {
		if srv.Addr().Is4() != s.LocalAddr().Addr().Is4() {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, stun.DefaultTimeout)
		r, err := c.Do(dctx, stun.Request{Server: srv})
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return r.Mapped, nil
	}
	return netip.AddrPort{}, fmt.Errorf("punch: no STUN server answered over UDP from %s: %w", s.LocalAddr(), errors.Join(errs...))
}

// nonQUIC is a net.PacketConn over the transport's non-QUIC datagrams, for
// the STUN client: Close stops its reads but leaves the socket open.
type nonQUIC struct {
	s      *UDPSocket
	ctx    context.Context
	cancel context.CancelFunc
}

func newNonQUIC(s *UDPSocket) *nonQUIC {
	ctx, cancel := context.WithCancel(context.Background())
	return &nonQUIC{s: s, ctx: ctx, cancel: cancel}
}

func (q *nonQUIC) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := q.s.tr.ReadNonQUICPacket(q.ctx, b)
	if err != nil {
		return 0, nil, fmt.Errorf("punch: read: %w: %w", net.ErrClosed, err)
	}
	return n, from, nil
}

func (q *nonQUIC) WriteTo(b []byte, to net.Addr) (int, error) { return q.s.tr.WriteTo(b, to) }
func (q *nonQUIC) Close() error                               { q.cancel(); return nil }
func (q *nonQUIC) LocalAddr() net.Addr                        { return q.s.pc.LocalAddr() }
func (q *nonQUIC) SetDeadline(time.Time) error                { return nil }
func (q *nonQUIC) SetReadDeadline(time.Time) error            { return nil }
func (q *nonQUIC) SetWriteDeadline(time.Time) error           { return nil }

// UDPConfig is one UDP punch.
type UDPConfig struct {
	// Socket is the punch socket whose mapping the peer was told.
	Socket *UDPSocket
	// PipeID goes into every punch datagram; datagrams naming another are
	// ignored.
	PipeID string
	// Targets are the peer's UDP endpoints (its mapping or predicted
	// ports). Required, at most MaxTargets.
	Targets []netip.AddrPort
	// AnyPort takes punch datagrams and QUIC connections from any port of
	// the targets' addresses: the peer's NAT picks unpredictable ports.
	AnyPort bool
	// Initiator dials QUIC; the other side accepts.
	Initiator bool
	// At is the meeting time on the corrected clock Now (nil: time.Now).
	At  time.Time
	Now func() time.Time
	// Burst datagrams (0: 5) Gap apart (0: 30 ms) go to every target at
	// At, then one every 250 ms until Window (0: 6 s) after At.
	Burst  int
	Gap    time.Duration
	Window time.Duration
	// Quiet, when set, ends the punch early (ErrQuiet) if Quiet after
	// At no punch datagram has come from the peer's endpoints and no
	// QUIC connection has opened: a punch whose datagrams will never
	// meet can then be tried again with fresh ports inside the time
	// Window would take. 0: run the whole Window.
	Quiet time.Duration
	// Idle is the QUIC idle timeout of the pipe (0: 30 s).
	Idle time.Duration
	Log  *slog.Logger
}

func (c *UDPConfig) defaults() error {
	if c.Socket == nil {
		return errors.New("punch: udp config needs a socket")
	}
	if len(c.Targets) == 0 || len(c.Targets) > MaxTargets {
		return fmt.Errorf("punch: %d udp targets, want 1-%d", len(c.Targets), MaxTargets)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Burst <= 0 {
		c.Burst = DefaultUDPBurst
	}
	if c.Gap <= 0 {
		c.Gap = DefaultUDPGap
	}
	if c.Window <= 0 {
		c.Window = DefaultUDPWindow
	}
	if c.Idle <= 0 {
		c.Idle = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// UDPStats say what a UDP punch did.
type UDPStats struct {
	Sent  int // punch datagrams sent
	Heard int // the peer's punch datagrams received
	Dials int // QUIC dials (initiator) or connections accepted
}

func (s UDPStats) String() string {
	return fmt.Sprintf("%d punch datagrams sent, %d heard, %d QUIC connections", s.Sent, s.Heard, s.Dials)
}

// RunUDP waits for the meeting time and punches; every QUIC stream that
// opens is given to found, one at a time, which returns true when it keeps
// it (the punch is over) and false when it disposed of it (handed it on or
// closed it). RunUDP returns when found kept one (nil), ctx ends, or the
// window passes (ErrNoConnection). It owns the socket: that is closed once
// RunUDP has returned and the QUIC connection of every stream found got
// has ended.
func RunUDP(ctx context.Context, cfg UDPConfig, found func(net.Conn) bool) (UDPStats, error) {
	var st UDPStats
	if err := cfg.defaults(); err != nil {
		if cfg.Socket != nil {
			_ = cfg.Socket.Close()
		}
		return st, err
	}
	s := cfg.Socket
	end := cfg.At.Add(cfg.Window)
	parent := ctx
	ctx, cancel := context.WithDeadline(ctx, time.Now().Add(end.Sub(cfg.Now())))
	defer cancel()
	want := map[netip.AddrPort]bool{}
	hosts := map[netip.Addr]bool{}
	for _, t := range cfg.Targets {
		want[t] = true
		hosts[t.Addr()] = true
	}
	allowed := func(ap netip.AddrPort) bool { return want[ap] || cfg.AnyPort && hosts[ap.Addr()] }
	stls, ctls, err := quicpipe.TLS(ALPN)
	if err != nil {
		_ = s.Close()
		return st, err
	}
	qconf := quicpipe.Config(cfg.Idle)
	opts := quicpipe.Options{Linger: cfg.Idle, Prefix: "punch"}
	var ln *quic.Listener
	if !cfg.Initiator {
		if ln, err = s.tr.Listen(stls, qconf); err != nil {
			_ = s.Close()
			return st, fmt.Errorf("punch: quic listen: %w", err)
		}
	}
	var mu sync.Mutex
	count := func(f func(*UDPStats)) { mu.Lock(); f(&st); mu.Unlock() }
	quiet := false // Quiet passed with nothing heard from the peer
	usable := 0    // punch datagrams heard from the peer's endpoints (allowed)
	if cfg.Quiet > 0 {
		stop := time.AfterFunc(cfg.At.Add(cfg.Quiet).Sub(cfg.Now()), func() {
			mu.Lock()
			// A QUIC connection (Dials) means the path is open even if
			// the peer's punch datagrams were lost.
			quiet = usable == 0 && st.Dials == 0
			mu.Unlock()
			if quiet {
				cancel()
			}
		})
		defer stop.Stop()
	}
	msg := append([]byte(punchMagic), cfg.PipeID...)
	send := func(to netip.AddrPort) {
		if _, err := s.tr.WriteTo(msg, net.UDPAddrFromAddrPort(to)); err == nil {
			count(func(st *UDPStats) { st.Sent++ })
		}
	}
	heard := make(chan netip.AddrPort, MaxTargets)
	conns := make(chan *quicpipe.Conn)
	var wg sync.WaitGroup
	// Reader: the peer's punch datagrams. The first from each endpoint is
	// answered, so a NAT whose port we could not predict learns ours.
	wg.Add(1)
	go func() {
		defer wg.Done()
		seen := map[netip.AddrPort]bool{}
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := s.tr.ReadNonQUICPacket(ctx, buf)
			if err != nil {
				return
			}
			ua, ok := from.(*net.UDPAddr)
			if !ok || !bytes.Equal(buf[:n], msg) {
				continue
			}
			ap := ua.AddrPort()
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			count(func(st *UDPStats) { st.Heard++ })
			if !allowed(ap) {
				continue
			}
			mu.Lock()
			usable++
			mu.Unlock()
			if seen[ap] || len(seen) >= MaxTargets {
				continue
			}
			seen[ap] = true
			send(ap)
			select {
			case heard <- ap:
			default:
			}
		}
	}()
	// Sender: a burst at the meeting, then slower until the window ends.
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTimer(cfg.At.Sub(cfg.Now()))
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, tg := range cfg.Targets {
				send(tg)
			}
			gap := cfg.Gap
			if i >= cfg.Burst-1 {
				gap = udpKeepPunching
			}
			t.Reset(gap)
		}
	}()
	offer := func(c *quicpipe.Conn) {
		select {
		case conns <- c:
		case <-ctx.Done():
			_ = c.Abort(quicpipe.CodeRefused, "punch over")
		}
	}
	if cfg.Initiator {
		// Dial each endpoint a punch datagram came from, once.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case ap := <-heard:
					count(func(st *UDPStats) { st.Dials++ })
					wg.Add(1)
					go func() {
						defer wg.Done()
						c, err := quicpipe.Dial(ctx, s.tr, net.UDPAddrFromAddrPort(ap), ctls.Clone(), qconf, opts)
						if err != nil {
							cfg.Log.Debug("punch: quic dial", "to", ap, "err", err)
							return
						}
						offer(c)
					}()
				}
			}
		}()
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				qc, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				ap := qc.RemoteAddr().(*net.UDPAddr).AddrPort()
				if !allowed(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())) {
					_ = qc.CloseWithError(quicpipe.CodeRefused, "not the peer")
					continue
				}
				count(func(st *UDPStats) { st.Dials++ })
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := quicpipe.Accept(ctx, qc, opts)
					if err != nil {
						cfg.Log.Debug("punch: quic accept", "from", ap, "err", err)
						return
					}
					offer(c)
				}()
			}
		}()
	}
	// Every stream found got (kept or handed on) keeps the socket open
	// until its QUIC connection ends.
	var kept *quicpipe.Conn
	var given []*quicpipe.Conn
loop:
	for {
		select {
		case c := <-conns:
			given = append(given, c)
			if found(c) {
				kept = c
				break loop
			}
		case <-ctx.Done():
			break loop
		}
	}
	cancel()
	if ln != nil {
		_ = ln.Close()
	}
	wg.Wait()
	if len(given) == 0 {
		_ = s.Close()
	} else {
		go func() {
			for _, c := range given {
				<-c.Context().Done()
			}
			_ = s.Close()
		}()
	}
	if kept == nil {
		if err := parent.Err(); err != nil {
			return st, fmt.Errorf("punch: udp: %w", err)
		}
		mu.Lock()
		q := quiet
		mu.Unlock()
		if q && len(given) == 0 { // nothing handed on that could still become a pipe
			return st, fmt.Errorf("%w %s after the meeting (udp: %s)", ErrQuiet, cfg.Quiet, st)
		}
		return st, fmt.Errorf("%w (udp: %s)", ErrNoConnection, st)
	}
	return st, nil
}

// PlanUDP decides whether a UDP punch can open a connection between the
// two NATs. The rule is Plan's: both sides' first datagrams must pass both
// NATs, so the same ports must be known or predicted and the same filters
// opened. The NAT profile is measured over UDP, so for UDP it is exact where
// for TCP it is an assumption; a NAT whose UDP is blocked (type 7) rules
// UDP out.
func PlanUDP(mine, peer Profile) Decision {
	switch {
	case mine.Type == nat.BlockedNAT:
		return Decision{false, "our UDP is blocked"}
	case peer.Type == nat.BlockedNAT:
		return Decision{false, "the peer's UDP is blocked"}
	}
	return Plan(mine, peer)
}

// UDPAlone reports whether a pair that can punch over UDP must not race
// TCP at the same time: a symmetric NAT on either side gives every new
// flow the next port of one sequence (the lab's sequential NAT shares it
// between TCP and UDP, and so do many real ones), so each leg's first
// packets would take ports the other leg's predictions counted on, and
// re-dialled SYNs after a RST burn more. UDP goes alone there: no RSTs,
// and the profile it predicts from was measured over UDP.
func UDPAlone(mine, peer Profile) bool {
	return mine.Type == nat.SymmetricNAT || peer.Type == nat.SymmetricNAT
}
