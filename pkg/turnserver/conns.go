package turnserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// packetConn wraps a UDP listening socket handed to pion.
type packetConn struct {
	net.PacketConn
	f     *filter
	chans *channels // nil: every datagram goes to pion
}

func (c *packetConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if c.chans != nil && isChannelData(p[:n]) && c.chans.fromClient(c, addr, p[:n]) {
			continue
		}
		reply, pass := c.f.inbound(p[:n], "udp", addr, c.PacketConn.LocalAddr())
		if pass != nil {
			if c.chans != nil && len(pass) >= stunHeader && binary.BigEndian.Uint16(pass) == typeChannelBindRequest {
				c.chans.request(c, addr, pass, c.f.now())
			}
			return len(pass), addr, nil
		}
		if reply != nil {
			_, _ = c.PacketConn.WriteTo(reply, addr)
		}
	}
}

func (c *packetConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	relay := c.f.outbound(p, "udp", addr, c.PacketConn.LocalAddr())
	if c.chans != nil {
		switch {
		case relay.IsValid():
			if ua, ok := addr.(*net.UDPAddr); ok {
				c.chans.allocated(c, ua.AddrPort(), relay)
			}
		case isChannelBindAnswer(p):
			c.chans.answered(c, addr, p, c.f.now())
		}
	}
	return c.PacketConn.WriteTo(p, addr)
}

// writeChannelData sends data to a client as one ChannelData message with
// header hdr, padded to four bytes as pion pads it.
func (c *packetConn) writeChannelData(hdr [4]byte, data []byte, to net.Addr) {
	if bc, ok := c.PacketConn.(*batchConn); ok && bc.writeChannelData(hdr, data, to) {
		return
	}
	frame := make([]byte, 0, 4+len(data)+3)
	frame = append(append(frame, hdr[:]...), data...)
	for len(frame)%4 != 0 {
		frame = append(frame, 0)
	}
	_, _ = c.PacketConn.WriteTo(frame, to)
}

// listener wraps a TCP or TLS listener handed to pion.
type listener struct {
	net.Listener
	f       *filter
	network string
	conns   *connSet
	idle    time.Duration // close connections that hold no allocation after this long without data
}

// connSet holds the open stream connections so Close can end them (pion
// closes only its listeners).
type connSet struct {
	mu     sync.Mutex
	m      map[*streamConn]struct{}
	max    int // 0: no limit
	closed bool
}

const (
	addOK = iota
	addFull
	addClosed
)

func (s *connSet) add(c *streamConn) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return addClosed
	case s.max > 0 && len(s.m) >= s.max:
		return addFull
	}
	s.m[c] = struct{}{}
	return addOK
}

func (s *connSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *connSet) remove(c *streamConn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*streamConn, 0, len(s.m))
	for c := range s.m {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Conn.Close()
	}
}

// Accept returns the next connection. Over the connection limit it closes
// new connections itself and keeps accepting (an error would end pion's
// accept loop).
func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		sc := &streamConn{Conn: c, f: l.f, network: l.network, data: make([]byte, 4096), set: l.conns, idle: l.idle}
		switch l.conns.add(sc) {
		case addOK:
			return sc, nil
		case addFull:
			l.f.m.tcpRefused.Inc()
			_ = c.Close()
		case addClosed:
			_ = c.Close()
			return nil, net.ErrClosed
		}
	}
}

// maxFrame is the largest TURN frame over a stream (STUN header + 64 KiB).
const maxFrame = stunHeader + 0xFFFF + 4

var (
	errBadFrame = errors.New("turnserver: stream data is neither STUN nor ChannelData")
	errBigFrame = errors.New("turnserver: frame larger than the server's buffer")
)

// streamConn wraps one accepted TCP/TLS connection. Read returns exactly one
// whole TURN frame per call, after the filter has seen it (pion's STUNConn
// re-frames what it is given, so whole frames pass through unchanged).
type streamConn struct {
	net.Conn
	f       *filter
	network string
	data    []byte // read buffer; data[r:w] is not yet returned
	r, w    int
	rerr    error // read error held until buffered frames are used
	set     *connSet
	idle    time.Duration
	held    bool // the connection has held an allocation: no idle limit any more
}

// armIdle sets the read deadline of a connection that has no allocation yet.
func (c *streamConn) armIdle() {
	if c.idle <= 0 || c.held {
		return
	}
	if c.f.tracker.holds(tupleKey(c.network, c.Conn.RemoteAddr(), c.Conn.LocalAddr())) {
		c.held = true
		_ = c.Conn.SetReadDeadline(time.Time{})
		return
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
}

func (c *streamConn) Close() error {
	c.set.remove(c)
	return c.Conn.Close()
}

// frameLen returns the length of the frame at the start of b, or 0 when more
// bytes are needed.
func frameLen(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, nil
	}
	var n int
	switch {
	case b[0]&0xC0 == 0x40: // ChannelData, padded to 4 over streams (RFC 5766 11.5)
		n = 4 + (int(binary.BigEndian.Uint16(b[2:4]))+3)&^3
	case b[0]&0xC0 == 0:
		n = stunHeader + int(binary.BigEndian.Uint16(b[2:4]))
	default:
		return 0, errBadFrame
	}
	if len(b) < n {
		return 0, nil
	}
	return n, nil
}

func (c *streamConn) nextFrame() ([]byte, error) {
	for {
		n, err := frameLen(c.data[c.r:c.w])
		if err != nil {
			return nil, err
		}
		if n > 0 {
			frame := c.data[c.r : c.r+n]
			c.r += n
			return frame, nil
		}
		if c.rerr != nil {
			if errors.Is(c.rerr, io.EOF) && c.w > c.r {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, c.rerr
		}
		if c.r > 0 {
			copy(c.data, c.data[c.r:c.w])
			c.w -= c.r
			c.r = 0
		}
		if c.w == len(c.data) {
			grown := make([]byte, min(2*len(c.data), maxFrame))
			copy(grown, c.data[:c.w])
			c.data = grown
		}
		c.armIdle()
		c.f.batch.flush() // relay writes this frame caused go out before we wait
		m, err := c.Conn.Read(c.data[c.w:])
		c.w += m
		c.rerr = err
	}
}

func (c *streamConn) Read(p []byte) (int, error) {
	for {
		frame, err := c.nextFrame()
		if err != nil {
			return 0, err
		}
		reply, pass := c.f.inbound(frame, c.network, c.Conn.RemoteAddr(), c.Conn.LocalAddr())
		if pass != nil {
			if len(pass) > len(p) {
				return 0, fmt.Errorf("%w (%d bytes)", errBigFrame, len(pass))
			}
			return copy(p, pass), nil
		}
		if reply != nil {
			if _, err := c.Conn.Write(reply); err != nil {
				return 0, err
			}
		}
	}
}

func (c *streamConn) Write(p []byte) (int, error) {
	c.f.outbound(p, c.network, c.Conn.RemoteAddr(), c.Conn.LocalAddr())
	return c.Conn.Write(p)
}
