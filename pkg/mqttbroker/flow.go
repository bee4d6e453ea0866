package mqttbroker

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// mochi v2.7.9 drops a QoS 1/2 message for a client whose inflight store is
// full (ErrQuotaExceeded, counted in InflightDropped) and the client never
// learns of it; its own queue for MQTT 5 Receive Maximum deletes a message
// from the store once sent and leaks send quota. So mochi is given room
// (Capabilities.MaximumInflight = window + queue + slack) and never holds a
// message back itself, and every client connection is a flowConn that keeps
// the wire window: at most `window` QoS 1/2 publishes written and not yet
// acknowledged. Publishes beyond the window wait, in order, in a bounded
// per-connection queue and go out as acknowledgements come in. When the
// queue is full the session ends visibly (MQTT 5: DISCONNECT 0x97 Quota
// exceeded; 3.1.1: the connection closes) instead of losing a message:
// mochi still holds every queued message in the session's inflight store
// and resends it when a persistent session resumes.

// flowLimits are shared by every connection of a broker.
type flowLimits struct {
	window      int // default wire window (QoS 1/2 publishes awaiting ack)
	maxQueued   int // publishes held back per connection
	maxBytes    int // bytes held back per connection
	queued      atomic.Int64
	onOverflow  func(fc *flowConn, queued, bytes int)
	disconnects atomic.Int64
}

var errQueueFull = errors.New("mqttbroker: client queue full: session ended")

// Packet types and the one DISCONNECT mqttd writes itself.
const (
	typePublish = 3
	// MQTT 5 DISCONNECT, reason 0x97 Quota exceeded, no properties.
	disconnectQuota = "\xe0\x02\x97\x00"
)

type queued struct {
	b   []byte
	qos byte
	id  uint16
}

// flowConn is one client connection with the wire window (see above).
type flowConn struct {
	net.Conn
	lim *flowLimits

	mu      sync.Mutex
	v5      bool
	window  int
	out     map[uint16]struct{} // packet ids written and not yet acknowledged
	queue   []queued
	qBytes  int
	partial []byte // an outgoing packet not yet complete
	closed  bool
}

func newFlowConn(c net.Conn, lim *flowLimits) *flowConn {
	return &flowConn{Conn: c, lim: lim, window: lim.window}
}

// setSession applies the client's protocol version and, for MQTT 5, its
// Receive Maximum (0: not given) once CONNECT has been read.
func (c *flowConn) setSession(v5 bool, receiveMax uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.v5 = v5
	c.window = c.lim.window
	if v5 && receiveMax > 0 && int(receiveMax) < c.window {
		c.window = int(receiveMax)
	}
}

// frame returns the length of the MQTT packet at the start of b, 0 when b
// holds only part of it, or -1 when the length field is malformed.
func frame(b []byte) int {
	n, mul := 0, 1
	for i := 1; i < len(b) && i <= 4; i++ {
		n += int(b[i]&0x7f) * mul
		if b[i]&0x80 == 0 {
			if total := i + 1 + n; total <= len(b) {
				return total
			}
			return 0
		}
		mul *= 128
	}
	if len(b) > 5 {
		return -1
	}
	return 0
}

// publishID returns the QoS and packet id of an encoded PUBLISH (id 0 for QoS 0).
func publishID(pkt []byte) (qos byte, id uint16, ok bool) {
	qos = pkt[0] >> 1 & 3
	if qos == 0 {
		return 0, 0, true
	}
	h := 2
	for pkt[h-1]&0x80 != 0 {
		h++
	}
	if h+2 > len(pkt) {
		return 0, 0, false
	}
	t := h + 2 + int(binary.BigEndian.Uint16(pkt[h:]))
	if t+2 > len(pkt) {
		return 0, 0, false
	}
	return qos, binary.BigEndian.Uint16(pkt[t:]), true
}

// Write takes what mochi encodes for the client: whole packets, in order.
// PUBLISH packets wait behind the window; every other packet goes straight
// out (acks of the client's own publishes, PINGRESP and SUBACK never wait
// for the client's acks).
func (c *flowConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	buf := p
	if len(c.partial) > 0 {
		buf = append(c.partial, p...)
		c.partial = nil
	}
	var pass net.Buffers
	i := 0
	for i < len(buf) {
		n := frame(buf[i:])
		if n < 0 {
			return 0, errors.New("mqttbroker: malformed outgoing packet")
		}
		if n == 0 {
			c.partial = append([]byte(nil), buf[i:]...)
			break
		}
		pkt := buf[i : i+n]
		i += n
		if pkt[0]>>4 != typePublish {
			pass = append(pass, pkt)
			continue
		}
		qos, id, ok := publishID(pkt)
		if !ok {
			return 0, errors.New("mqttbroker: malformed outgoing PUBLISH")
		}
		if len(c.queue) == 0 && c.room(qos, id) {
			c.sent(qos, id)
			pass = append(pass, pkt)
			continue
		}
		// A resent message (DUP: a session resuming) is in mochi's store
		// already, which bounds it; only new messages count against the queue.
		if dup := pkt[0]&0x08 != 0; !dup && (len(c.queue) >= c.lim.maxQueued || c.qBytes+len(pkt) > c.lim.maxBytes) {
			if len(pass) > 0 {
				_, _ = pass.WriteTo(c.Conn)
			}
			c.overflow()
			return 0, errQueueFull
		}
		c.queue = append(c.queue, queued{b: append([]byte(nil), pkt...), qos: qos, id: id})
		c.qBytes += len(pkt)
		c.lim.queued.Add(1)
	}
	if len(pass) > 0 {
		if _, err := pass.WriteTo(c.Conn); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// room reports whether a publish may go out now. Called with mu held.
func (c *flowConn) room(qos byte, id uint16) bool {
	if qos == 0 {
		return true
	}
	_, resend := c.out[id]
	return resend || len(c.out) < c.window
}

func (c *flowConn) sent(qos byte, id uint16) {
	if qos == 0 {
		return
	}
	if c.out == nil {
		c.out = map[uint16]struct{}{}
	}
	c.out[id] = struct{}{}
}

// acked frees the window slot of packet id (PUBACK, PUBCOMP, or a failed
// PUBREC from the client) and sends what now fits.
func (c *flowConn) acked(id uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.out[id]; !ok || c.closed {
		return
	}
	delete(c.out, id)
	var pass net.Buffers
	n := 0
	for n < len(c.queue) && c.room(c.queue[n].qos, c.queue[n].id) {
		q := c.queue[n]
		c.sent(q.qos, q.id)
		pass = append(pass, q.b)
		c.qBytes -= len(q.b)
		n++
	}
	if n == 0 {
		return
	}
	clear(c.queue[:n])
	c.queue = c.queue[n:]
	c.lim.queued.Add(-int64(n))
	_, _ = pass.WriteTo(c.Conn) // a failed write ends the read loop too
}

// overflow ends the session: MQTT 5 hears why. Called with mu held.
func (c *flowConn) overflow() {
	if c.lim.onOverflow != nil {
		c.lim.onOverflow(c, len(c.queue), c.qBytes)
	}
	if c.v5 {
		_, _ = c.Conn.Write([]byte(disconnectQuota))
	}
	c.lim.disconnects.Add(1)
	c.drop()
	_ = c.Conn.Close()
}

// drop forgets the queue (mochi's inflight store still holds the messages).
func (c *flowConn) drop() {
	c.closed = true
	c.lim.queued.Add(-int64(len(c.queue)))
	c.queue, c.qBytes, c.partial = nil, 0, nil
}

func (c *flowConn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.drop()
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// queueLen is the number of publishes waiting (for tests and metrics).
func (c *flowConn) queueLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}
