package stun

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v2"
)

// Defaults of the client. RFC 8489 suggests an initial RTO of 500 ms; p2pd
// works on networks it mostly knows and wants answers fast, so it starts at
// 100 ms and doubles on every retransmission, like RFC 8489.
const (
	DefaultRTO     = 100 * time.Millisecond
	DefaultTimeout = 2 * time.Second
)

// ErrTimeout is returned when no matching response arrived in time.
var ErrTimeout = errors.New("stun: no response")

// ErrorResponse is a STUN error response to a request.
type ErrorResponse struct {
	Code   int
	Reason string
}

func (e *ErrorResponse) Error() string {
	return fmt.Sprintf("stun: error response %d %s", e.Code, e.Reason)
}

// Request is one Binding request.
type Request struct {
	Server netip.AddrPort
	// Change holds CHANGE-REQUEST flags (ChangeIP, ChangePort); 0 sends none.
	Change uint32
	// Classic sends an RFC 3489 request (16-byte transaction id, no cookie).
	Classic bool
}

// Response is a Binding success response.
type Response struct {
	Mapped netip.AddrPort // XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS
	Other  netip.AddrPort // OTHER-ADDRESS, else CHANGED-ADDRESS (zero if absent)
	Origin netip.AddrPort // RESPONSE-ORIGIN, else SOURCE-ADDRESS (zero if absent)
	From   netip.AddrPort // where the response came from
	Local  netip.AddrPort // the local socket address it arrived on
}

// newRequest encodes a Binding request into m and returns its 16-byte key
// (bytes 4-20 of the header: cookie and id, or the classic id).
func newRequest(m *stun.Message, r Request) ([16]byte, error) {
	var key [16]byte
	m.Reset()
	m.Type = stun.BindingRequest
	if _, err := rand.Read(key[:]); err != nil {
		return key, fmt.Errorf("stun: transaction id: %w", err)
	}
	if r.Classic && binary.BigEndian.Uint32(key[0:4]) == MagicCookie {
		key[0] ^= 0xFF
	}
	copy(m.TransactionID[:], key[4:])
	m.WriteHeader()
	if r.Change != 0 {
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], r.Change)
		m.Add(stun.AttrChangeRequest, v[:])
	}
	if r.Classic {
		finishClassic(m, key)
	} else {
		binary.BigEndian.PutUint32(key[0:4], MagicCookie)
	}
	return key, nil
}

// ParseResponse decodes a Binding response (success or error). An error
// response yields *ErrorResponse.
func ParseResponse(b []byte) (Response, [16]byte, error) {
	var m stun.Message
	scratch := make([]byte, 0, len(b))
	return parseResponse(&m, b, scratch)
}

func parseResponse(m *stun.Message, b, scratch []byte) (Response, [16]byte, error) {
	var r Response
	key, classic, err := decode(m, b, scratch)
	if err != nil {
		return r, key, err
	}
	if !classic && m.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(m); err != nil {
			return r, key, fmt.Errorf("stun: %w", err)
		}
	}
	switch m.Type {
	case stun.BindingSuccess:
	case stun.BindingError:
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(m); err != nil {
			return r, key, fmt.Errorf("stun: error response without ERROR-CODE: %w", err)
		}
		return r, key, &ErrorResponse{Code: int(ec.Code), Reason: string(ec.Reason)}
	default:
		return r, key, fmt.Errorf("stun: unexpected message type %s", m.Type)
	}
	var ok bool
	if !classic {
		r.Mapped, ok = getXORAddr(m)
	}
	if !ok {
		if r.Mapped, ok = getAddr(m, stun.AttrMappedAddress); !ok {
			return r, key, errors.New("stun: response without a mapped address")
		}
	}
	if r.Other, ok = getAddr(m, stun.AttrOtherAddress); !ok {
		r.Other, _ = getAddr(m, AttrChangedAddress)
	}
	if r.Origin, ok = getAddr(m, stun.AttrResponseOrigin); !ok {
		r.Origin, _ = getAddr(m, AttrSourceAddress)
	}
	return r, key, nil
}

// acceptable reports whether a response from `from` fits a request r: a
// plain request must be answered by the server itself; a change request by
// an address that differs exactly as asked.
func acceptable(r Request, from netip.AddrPort) bool {
	sameIP := from.Addr() == r.Server.Addr().Unmap()
	samePort := from.Port() == r.Server.Port()
	if r.Change&ChangeIP != 0 {
		sameIP = !sameIP
	}
	if r.Change&ChangePort != 0 {
		samePort = !samePort
	}
	return sameIP && samePort
}

// Conn runs Binding transactions over one UDP socket. Many transactions may
// be in flight at once; responses are matched by transaction id and source.
type Conn struct {
	pc  net.PacketConn
	rto time.Duration

	mu      sync.Mutex
	pending map[[16]byte]*txn
	done    chan struct{}
}

type txn struct {
	req Request
	ch  chan reply
}

type reply struct {
	resp Response
	err  error
}

// NewConn starts reading pc. rto is the initial retransmission timeout
// (0: DefaultRTO). Close closes pc.
func NewConn(pc net.PacketConn, rto time.Duration) *Conn {
	if rto <= 0 {
		rto = DefaultRTO
	}
	c := &Conn{pc: pc, rto: rto, pending: map[[16]byte]*txn{}, done: make(chan struct{})}
	go c.read()
	return c
}

// LocalAddr is the socket's address.
func (c *Conn) LocalAddr() netip.AddrPort {
	if a, ok := c.pc.LocalAddr().(*net.UDPAddr); ok {
		return netAddrPortUnmap(a.AddrPort())
	}
	return netip.AddrPort{}
}

// Close closes the socket; transactions in flight fail.
func (c *Conn) Close() error {
	err := c.pc.Close()
	<-c.done
	return err
}

func (c *Conn) read() {
	defer close(c.done)
	buf := make([]byte, 2048)
	scratch := make([]byte, 0, 2048)
	var m stun.Message
	local := c.LocalAddr()
	for {
		n, from, err := c.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		src := netAddrPortUnmap(ua.AddrPort())
		resp, key, err := parseResponse(&m, buf[:n], scratch)
		if err != nil {
			var er *ErrorResponse
			if !errors.As(err, &er) {
				continue // not a response we can use: ignore, keep waiting
			}
		}
		c.mu.Lock()
		t := c.pending[key]
		c.mu.Unlock()
		if t == nil {
			continue
		}
		if err == nil && !acceptable(t.req, src) {
			continue
		}
		if err != nil && src != t.req.Server {
			continue // error responses come from the address asked
		}
		resp.From, resp.Local = src, local
		select {
		case t.ch <- reply{resp, err}:
		default:
		}
	}
}

// Txn is a Binding transaction in flight on a Conn.
type Txn struct {
	c    *Conn
	t    *txn
	key  [16]byte
	raw  []byte
	dst  *net.UDPAddr
	sent time.Time
}

// Send registers r and sends its first transmission before returning, so
// callers control the order in which requests leave (and NATs allocate
// mappings). Wait collects the response.
func (c *Conn) Send(r Request) (*Txn, error) {
	var m stun.Message
	key, err := newRequest(&m, r)
	if err != nil {
		return nil, err
	}
	x := &Txn{c: c, t: &txn{req: r, ch: make(chan reply, 1)}, key: key, raw: m.Raw, dst: net.UDPAddrFromAddrPort(r.Server)}
	c.mu.Lock()
	c.pending[key] = x.t
	c.mu.Unlock()
	x.sent = time.Now()
	if _, err := c.pc.WriteTo(x.raw, x.dst); err != nil {
		x.forget()
		return nil, fmt.Errorf("stun: send to %s: %w", r.Server, err)
	}
	return x, nil
}

func (x *Txn) forget() {
	x.c.mu.Lock()
	delete(x.c.pending, x.key)
	x.c.mu.Unlock()
}

// Wait retransmits the request (RTO doubling each time, as RFC 8489) until
// a matching response arrives or ctx ends (with no deadline, DefaultTimeout
// applies). It may be called once.
func (x *Txn) Wait(ctx context.Context) (Response, error) {
	defer x.forget()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	wait := x.c.rto
	timer := time.NewTimer(time.Until(x.sent.Add(wait)))
	defer timer.Stop()
	for {
		select {
		case rep := <-x.t.ch:
			return rep.resp, rep.err
		case <-ctx.Done():
			return Response{}, fmt.Errorf("%w from %s: %w", ErrTimeout, x.t.req.Server, ctx.Err())
		case <-x.c.done:
			return Response{}, fmt.Errorf("stun: connection closed: %w", net.ErrClosed)
		case <-timer.C:
			if _, err := x.c.pc.WriteTo(x.raw, x.dst); err != nil {
				return Response{}, fmt.Errorf("stun: send to %s: %w", x.t.req.Server, err)
			}
			wait *= 2
			timer.Reset(wait)
		}
	}
}

// Do sends r and waits for its response (see Send and Wait).
func (c *Conn) Do(ctx context.Context, r Request) (Response, error) {
	x, err := c.Send(r)
	if err != nil {
		return Response{}, err
	}
	return x.Wait(ctx)
}
