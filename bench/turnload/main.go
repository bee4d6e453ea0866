// Command turnload drives a TURN server (turnd or coturn) over loopback UDP
// and reports what it sustained: "alloc" mode counts Allocate (with its 401
// round trip) + release cycles per second from fresh 127.x.y.z client
// addresses; "relay" mode holds allocations with channels bound to a local
// echo peer and counts relayed packets per second. Load is bounded by
// -duration and stops by itself; traffic only goes to loopback.
package main

import (
	"context"
	"crypto/md5" //nolint:gosec // TURN long-term key is MD5 by definition
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v2"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "turnload:", err)
		os.Exit(1)
	}
}

type opts struct {
	server, user, pass, realm string
	mode                      string
	workers                   int
	duration                  time.Duration
	size                      int
	window                    int
	subnet                    int
}

func run() error {
	var o opts
	flag.StringVar(&o.server, "server", "127.0.0.1:3478", "TURN server UDP address (loopback only)")
	flag.StringVar(&o.user, "user", "alice", "username")
	flag.StringVar(&o.pass, "pass", "alice-pw", "password")
	flag.StringVar(&o.realm, "realm", "", "realm (default: the one the server announces)")
	flag.StringVar(&o.mode, "mode", "alloc", "alloc or relay")
	flag.IntVar(&o.workers, "workers", 4, "concurrent clients")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "how long to load the server")
	flag.IntVar(&o.size, "size", 100, "relay payload bytes")
	flag.IntVar(&o.window, "window", 8, "relay packets in flight per client")
	flag.IntVar(&o.subnet, "subnet", 1, "second octet of the 127.N.x.y client addresses (use a fresh one per run)")
	flag.Parse()
	ap, err := netip.ParseAddrPort(o.server)
	if err != nil || !ap.Addr().IsLoopback() {
		return fmt.Errorf("-server must be a loopback address:port, got %q", o.server)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	var n atomic.Int64
	var errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if o.mode == "relay" {
				err = relayWorker(ctx, o, w, &n)
			} else {
				err = allocWorker(ctx, o, w, &n, &errs, &firstErr)
			}
			if err != nil && ctx.Err() == nil {
				firstErr.CompareAndSwap(nil, err)
				errs.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	if e := firstErr.Load(); e != nil && n.Load() == 0 {
		return e.(error)
	}
	unit := "allocations"
	if o.mode == "relay" {
		unit = "packets"
	}
	fmt.Printf("%s %d in %.2fs = %.0f/s errors=%d\n", unit, n.Load(), el, float64(n.Load())/el, errs.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "turnload: first error: %v\n", e)
	}
	return nil
}

// client is one raw TURN client socket.
type client struct {
	c     *net.UDPConn
	srv   *net.UDPAddr
	o     opts
	key   []byte
	realm stun.Realm
	nonce stun.Nonce
	buf   []byte
}

// clientAddr spreads clients over 127.<subnet>.<hi>.<lo> so no 5-tuple repeats.
func clientAddr(o opts, worker, seq int) *net.UDPAddr {
	id := worker*20000 + seq%20000
	return &net.UDPAddr{IP: net.IPv4(127, byte(o.subnet), byte(1+id/250%250), byte(1+id%250))}
}

func dial(o opts, local *net.UDPAddr) (*client, error) {
	srv, err := net.ResolveUDPAddr("udp4", o.server)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp4", local)
	if err != nil {
		return nil, err
	}
	return &client{c: c, srv: srv, o: o, buf: make([]byte, 2048)}, nil
}

var errTimeout = errors.New("no answer")

func (cl *client) roundTrip(m *stun.Message) (*stun.Message, error) {
	for attempt := 0; attempt < 4; attempt++ {
		if _, err := cl.c.WriteToUDP(m.Raw, cl.srv); err != nil {
			return nil, err
		}
		_ = cl.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, err := cl.c.Read(cl.buf)
			if err != nil {
				break
			}
			res := &stun.Message{Raw: append([]byte(nil), cl.buf[:n]...)}
			if res.Decode() == nil && res.TransactionID == m.TransactionID {
				return res, nil
			}
		}
	}
	return nil, errTimeout
}

func (cl *client) authed(method stun.Method, extra ...stun.Setter) (*stun.Message, error) {
	s := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, extra...)
	s = append(s, stun.NewUsername(cl.o.user), cl.realm, cl.nonce, stun.MessageIntegrity(cl.key))
	m, err := stun.Build(s...)
	if err != nil {
		return nil, err
	}
	res, err := cl.roundTrip(m)
	if err != nil {
		return nil, err
	}
	if res.Type.Class == stun.ClassErrorResponse {
		var ec stun.ErrorCodeAttribute
		_ = ec.GetFrom(res)
		if ec.Code == stun.CodeStaleNonce {
			_ = cl.nonce.GetFrom(res)
			return cl.authed(method, extra...)
		}
		return nil, fmt.Errorf("%s: error %d", method, ec.Code)
	}
	return res, nil
}

type attr struct {
	t stun.AttrType
	v []byte
}

func (a attr) AddTo(m *stun.Message) error { m.Add(a.t, a.v); return nil }

type peerAttr struct{ a stun.XORMappedAddress }

func (p peerAttr) AddTo(m *stun.Message) error { return p.a.AddToAs(m, stun.AttrXORPeerAddress) }

var udpTransport = attr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}}

func (cl *client) allocate() (netip.AddrPort, error) {
	m, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport)
	res, err := cl.roundTrip(m)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if err := cl.nonce.GetFrom(res); err != nil {
		return netip.AddrPort{}, fmt.Errorf("no nonce: %w", err)
	}
	if cl.o.realm != "" {
		cl.realm = stun.NewRealm(cl.o.realm)
	} else if err := cl.realm.GetFrom(res); err != nil {
		return netip.AddrPort{}, fmt.Errorf("no realm: %w", err)
	}
	h := md5.New() //nolint:gosec
	fmt.Fprintf(h, "%s:%s:%s", cl.o.user, cl.realm, cl.o.pass)
	cl.key = h.Sum(nil)
	res, err = cl.authed(stun.MethodAllocate, udpTransport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		return netip.AddrPort{}, err
	}
	a, _ := netip.AddrFromSlice(relayed.IP)
	return netip.AddrPortFrom(a.Unmap(), uint16(relayed.Port)), nil
}

func (cl *client) release() error {
	_, err := cl.authed(stun.MethodRefresh, attr{stun.AttrLifetime, []byte{0, 0, 0, 0}})
	return err
}

func allocWorker(ctx context.Context, o opts, w int, n, errs *atomic.Int64, firstErr *atomic.Value) error {
	for seq := 0; ctx.Err() == nil; seq++ {
		cl, err := dial(o, clientAddr(o, w, seq))
		if err != nil {
			return err
		}
		_, err = cl.allocate()
		if err == nil {
			err = cl.release()
		}
		_ = cl.c.Close()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			errs.Add(1)
			firstErr.CompareAndSwap(nil, err)
			continue
		}
		n.Add(1)
	}
	return nil
}

// relayWorker binds a channel to its own echo peer and keeps window packets
// in flight, counting two relayed packets per echo (to the peer and back).
func relayWorker(ctx context.Context, o opts, w int, n *atomic.Int64) error {
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer peer.Close()
	go func() {
		b := make([]byte, 2048)
		for {
			k, from, err := peer.ReadFromUDP(b)
			if err != nil {
				return
			}
			_, _ = peer.WriteToUDP(b[:k], from)
		}
	}()
	cl, err := dial(o, clientAddr(o, w, 0))
	if err != nil {
		return err
	}
	defer cl.c.Close()
	if _, err := cl.allocate(); err != nil {
		return err
	}
	pa := peer.LocalAddr().(*net.UDPAddr)
	ch := uint16(0x4000 + w)
	var xp stun.XORMappedAddress
	xp.IP, xp.Port = pa.IP.To4(), pa.Port
	if _, err := cl.authed(stun.MethodChannelBind, peerAttr{xp}, attr{stun.AttrChannelNumber, []byte{byte(ch >> 8), byte(ch), 0, 0}}); err != nil {
		return err
	}
	frame := make([]byte, 4+o.size)
	binary.BigEndian.PutUint16(frame, ch)
	binary.BigEndian.PutUint16(frame[2:], uint16(o.size))
	send := func() { _, _ = cl.c.WriteToUDP(frame, cl.srv) }
	for range o.window {
		send()
	}
	buf := make([]byte, 2048)
	for ctx.Err() == nil {
		_ = cl.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		k, err := cl.c.Read(buf)
		if err != nil {
			// a lost packet: put one back in flight
			send()
			continue
		}
		if k >= 4 && buf[0]&0xC0 == 0x40 {
			n.Add(2)
			send()
		}
	}
	return nil
}
