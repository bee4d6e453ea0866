package mqttbroker

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// mochi v2.7.9 drops a QoS 1/2 message for a client whose inflight store is
// full (ErrQuotaExceeded, counted in InflightDropped) and the client never
// learns of it; its own queue for MQTT 5 Receive Maximum deletes a message
// from the store once sent and leaks send quota; and a message that finds
// the client's write channel full (a slow reader) is dropped too. So mochi
// is given room (Capabilities.MaximumInflight = window + queue + slack) and
// never holds a message back itself, and every client connection is a
// flowConn:
//
//   - Write never blocks: what mochi writes is taken at once. When nothing
//     is waiting to be written and mochi holds few further QoS 1/2 messages
//     for the client, it goes to the socket from the caller's own goroutine with
//     one non-blocking write (no goroutine hop, which at light load is most
//     of a delivery's latency); what the socket does not take is
//     written by the connection's own writer goroutine (started when there
//     is something left to write, gone when there is not), so mochi's write
//     channel never fills.
//   - It keeps the wire window: at most `window` QoS 1/2 publishes written
//     and not yet acknowledged. Later publishes wait, in order, in a bounded
//     queue and go out as acknowledgements come in.
//   - A connection whose queue is half full, or whose messages fill half of
//     mochi's write channel (its writer goroutine is behind), is congested:
//     publishers to it wait (hook.OnPublish, up to Limits.QueueWait) until it
//     has drained to a quarter, which slows them to the pace of their
//     subscribers, as a single-threaded broker such as mosquitto does by
//     nature.
//   - When the queue is full all the same, the session ends visibly (MQTT 5:
//     DISCONNECT 0x97 Quota exceeded; 3.1.1: the connection closes) instead of
//     losing a message: mochi still holds every queued message in the
//     session's store and resends it when a persistent session resumes.

// flowLimits are shared by every connection of a broker.
type flowLimits struct {
	window     int // default wire window (QoS 1/2 publishes awaiting ack)
	maxQueued  int // publishes held back per connection
	maxBytes   int // bytes held back or not yet written, per connection
	maxPending int // mochi's per-client write channel (MaxPendingWrites)
	queued     atomic.Int64
	congested  atomic.Int64 // connections congested now
	park       *parker      // nil: read loops never park (park.go)
	// holdAcks lets Write hold acks back while more of the client's input is
	// buffered (off with a store: each message then waits for a disk sync,
	// and an ack would wait for every sync of the read).
	holdAcks   bool
	onOverflow func(queued, bytes int)
}

var errQueueFull = errors.New("mqttbroker: client queue full: session ended")

// Packet types and the one packet mqttd writes itself.
const (
	typePublish = 3
	typePuback  = 4 // PUBACK, PUBREC, PUBREL and PUBCOMP are 4 to 7
	typePubcomp = 7
	// MQTT 5 DISCONNECT, reason 0x97 Quota exceeded, no properties.
	disconnectQuota = "\xe0\x02\x97\x00"
)

// directMaxPending is how many further QoS 1/2 messages mochi may hold for
// a client for a write to still go straight to the socket (see kick).
const directMaxPending = 8

// closeFlush bounds how long Close waits for unwritten bytes (a CONNACK
// refusal, a DISCONNECT) to reach a client that does not read.
const closeFlush = 2 * time.Second

type queued struct {
	b   []byte
	qos byte
	id  uint16
}

// flowConn is one client connection (see above).
type flowConn struct {
	net.Conn
	lim *flowLimits
	raw rawWriter // non-blocking writes from the caller (plain sockets only)

	mu        sync.Mutex
	v5        bool
	session   bool // the client was let in (its CONNECT passed)
	window    int
	out       map[uint16]struct{} // packet ids written and not yet acknowledged
	queue     []queued            // publishes waiting for the window
	qBytes    int
	wbuf      [][]byte // taken from mochi, not yet written to the socket
	wBytes    int
	writing   bool          // the writer goroutine runs
	flushed   chan struct{} // closed when the writer stops
	werr      error
	partial   []byte // an outgoing packet not yet complete
	closed    bool
	congested bool
	drained   chan struct{} // closed when the connection stops being congested
	// pending counts QoS 1/2 messages mochi has stored for this client and
	// not yet handed to Write: they sit in mochi's write channel, which
	// drops what does not fit (--max-pending-writes) when the client's
	// writer goroutine falls behind its publishers. One that mochi takes out
	// and then refuses to write (too large for the client) never reaches
	// Write and is counted down by refused instead.
	pending int
	// held: wbuf holds acks that wait for the read loop (Write, flushHeld).
	held atomic.Bool

	// The read side (park.go), used by mochi's read loop only, but for
	// inputPending, which Write reads: the read buffer holds bytes the loop
	// has not read yet.
	inputPending atomic.Bool
	rbuf         *[]byte   // the read buffer, from readBufs
	rb           []byte    // its bytes not yet read
	rerr         error     // what the read that filled it returned after them
	rdeadline    time.Time // mochi's read deadline (keepalive)
	setUp        bool      // the loop has parked once (CONNACK was sent)

	// A read waiting in the loop's goroutine, which the parker's sweep may
	// wake to park it (park.go).
	kmu       sync.Mutex
	inRead    bool
	kicked    bool
	readSince int64 // the sweep count when the read began
	watched   bool  // in the parker's sweep set (under parker.mu)

	// Parking (park_linux.go): parkID and parkTimer under parker.mu.
	closing   atomic.Bool // the socket is closed or closing
	parkID    uint64      // non-zero while parked
	parkTimer *time.Timer // wakes a parked loop at rdeadline
	polled    bool        // the socket is in the parker's epoll set

	ended    func(err error) // mochi is done with the connection
	panicked func(r any)     // the read loop panicked
}

func newFlowConn(c net.Conn, lim *flowLimits) *flowConn {
	return &flowConn{Conn: c, lim: lim, window: lim.window, raw: newRawWriter(c)}
}

// hasSession reports whether the client was let in.
func (c *flowConn) hasSession() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// setSession applies the client's protocol version and, for MQTT 5, its
// Receive Maximum (0: not given) once CONNECT has been read.
func (c *flowConn) setSession(v5 bool, receiveMax uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.v5 = v5
	c.session = true
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
	if c.werr != nil {
		return 0, c.werr
	}
	// One copy: mochi may reuse p once Write returns; the packets sent and
	// queued below are slices of buf.
	buf := append(c.partial, p...)
	c.partial = nil
	acksOnly := true
	for i := 0; i < len(buf); {
		n := frame(buf[i:])
		if n < 0 {
			return 0, errors.New("mqttbroker: malformed outgoing packet")
		}
		if n == 0 {
			c.partial = buf[i:len(buf):len(buf)]
			break
		}
		pkt := buf[i : i+n]
		i += n
		t := pkt[0] >> 4
		if t < typePuback || t > typePubcomp {
			acksOnly = false
		}
		if t != typePublish {
			c.send(pkt)
			continue
		}
		qos, id, ok := publishID(pkt)
		if !ok {
			return 0, errors.New("mqttbroker: malformed outgoing PUBLISH")
		}
		// A resent message (DUP: a session resuming) is in mochi's store
		// already, which bounds it; only new messages count against the bound.
		dup := pkt[0]&0x08 != 0
		if qos > 0 && !dup && c.pending > 0 {
			c.pending--
		}
		if !dup && (len(c.queue) >= c.lim.maxQueued || c.qBytes+c.wBytes+len(pkt) > c.lim.maxBytes) {
			c.overflow()
			return 0, errQueueFull
		}
		if len(c.queue) == 0 && c.room(qos, id) {
			c.sent(qos, id)
			c.send(pkt)
			continue
		}
		c.queue = append(c.queue, queued{b: pkt, qos: qos, id: id})
		c.qBytes += len(pkt)
		c.lim.queued.Add(1)
	}
	if acksOnly && c.lim.holdAcks && c.partial == nil && c.inputPending.Load() {
		// Acks of the client's own packets while the read loop still has
		// more of its input to process: they go out with whatever that
		// produces, or before the loop next reads the socket (flushHeld).
		// A write per PUBACK took 7 % off QoS 1 deliveries/s in an A/B.
		c.held.Store(true)
		c.checkCongestion()
		return len(p), nil
	}
	c.kick()
	c.checkCongestion()
	return len(p), nil
}

// flushHeld writes acks Write held back. Called by the read loop before it
// reads the socket or parks.
func (c *flowConn) flushHeld() {
	if !c.held.Load() {
		return
	}
	c.mu.Lock()
	c.kick()
	c.checkCongestion()
	c.mu.Unlock()
}

// send adds pkt to what is to be written; kick writes it. Called with mu held.
func (c *flowConn) send(pkt []byte) {
	c.wbuf = append(c.wbuf, pkt)
	c.wBytes += len(pkt)
}

// kick writes what send took: first with one non-blocking write from the
// caller when no writer goroutine runs (it would be ahead in the byte
// stream) and mochi holds at most a few further messages for this client,
// then the rest, if any, from a writer goroutine. When more are queued
// behind (pending: a loaded broker) the writer goroutine is started at once
// instead: what arrives while it gets going goes out in the same writev, and
// one system call per message cost about 10% of the deliveries/s of
// 10 -> 10 at QoS 1.
// Called with mu held.
func (c *flowConn) kick() {
	c.held.Store(false)
	if c.writing || len(c.wbuf) == 0 {
		return
	}
	if c.raw.ok() && c.werr == nil && c.pending <= directMaxPending {
		n, err := c.raw.writeNow(c.wbuf)
		if err != nil {
			c.werr = err
			c.wbuf, c.wBytes = nil, 0
			c.closeSocket() // ends mochi's read loop, as the writer does
			return
		}
		c.consume(n)
		if len(c.wbuf) == 0 {
			return
		}
	}
	c.writing = true
	c.flushed = make(chan struct{})
	go c.writer()
}

// consume drops the first n bytes written from wbuf. Called with mu held.
func (c *flowConn) consume(n int) {
	c.wBytes -= n
	i := 0
	for i < len(c.wbuf) && n >= len(c.wbuf[i]) {
		n -= len(c.wbuf[i])
		c.wbuf[i] = nil
		i++
	}
	if i == len(c.wbuf) {
		c.wbuf = c.wbuf[:0]
		return
	}
	c.wbuf[i] = c.wbuf[i][n:]
	c.wbuf = c.wbuf[i:]
}

// writer writes what Write and acked took, until there is nothing left.
func (c *flowConn) writer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.wbuf) > 0 && c.werr == nil {
		bufs := net.Buffers(c.wbuf)
		c.wbuf, c.wBytes = nil, 0
		c.mu.Unlock()
		_, err := bufs.WriteTo(c.Conn)
		c.mu.Lock()
		if err != nil {
			c.werr = err
			c.closeSocket() // ends mochi's read loop: the session ends as for any broken connection
		}
		c.checkCongestion()
	}
	c.wbuf, c.wBytes = nil, 0
	c.writing = false
	close(c.flushed)
	c.checkCongestion()
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
	n := 0
	for n < len(c.queue) && c.room(c.queue[n].qos, c.queue[n].id) {
		q := c.queue[n]
		c.sent(q.qos, q.id)
		c.qBytes -= len(q.b)
		c.wbuf = append(c.wbuf, q.b)
		c.wBytes += len(q.b)
		n++
	}
	if n == 0 {
		return
	}
	clear(c.queue[:n])
	c.queue = c.queue[n:]
	c.lim.queued.Add(-int64(n))
	c.kick()
	c.checkCongestion()
}

// stored is called when mochi stores a QoS 1/2 message for this client
// (OnQosPublish), before it goes into mochi's write channel.
func (c *flowConn) stored() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending++
	c.checkCongestion()
}

// refused is called when mochi's writer has taken a new QoS 1/2 message for
// this client out of its write channel and will not hand it to Write
// (OnPacketEncode: too large for the client).
func (c *flowConn) refused() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending > 0 {
		c.pending--
	}
	c.checkCongestion()
}

// lost is called when mochi dropped a message for this client because its
// write channel was full (OnPublishDropped).
func (c *flowConn) lost() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending > 0 {
		c.pending--
	}
	c.checkCongestion()
}

// checkCongestion moves the connection in and out of the congested state:
// in at half its queue bound or half of mochi's write channel, out at a
// quarter of both. Called with mu held.
func (c *flowConn) checkCongestion() {
	held := c.qBytes + c.wBytes
	switch {
	case !c.congested && !c.closed && (len(c.queue) >= c.lim.maxQueued/2 || held >= c.lim.maxBytes/2 ||
		c.lim.maxPending > 0 && c.pending >= c.lim.maxPending/2):
		c.congested = true
		c.drained = make(chan struct{})
		c.lim.congested.Add(1)
	case c.congested && (c.closed || len(c.queue) <= c.lim.maxQueued/4 && held <= c.lim.maxBytes/4 && c.pending <= c.lim.maxPending/4):
		c.congested = false
		close(c.drained)
		c.lim.congested.Add(-1)
	}
}

// waitDrained waits until the connection is not congested, it closes, or
// deadline passes.
func (c *flowConn) waitDrained(deadline time.Time) {
	c.mu.Lock()
	if !c.congested {
		c.mu.Unlock()
		return
	}
	ch := c.drained
	c.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// overflow ends the session: MQTT 5 hears why. Called with mu held.
func (c *flowConn) overflow() {
	if c.lim.onOverflow != nil {
		c.lim.onOverflow(len(c.queue), c.qBytes+c.wBytes)
	}
	if c.v5 {
		c.send([]byte(disconnectQuota))
	}
	c.kick() // what this Write took before the overflow, and the DISCONNECT
	c.drop()
	go c.flushAndClose()
}

// drop forgets the queue (mochi's store still holds the messages). Called
// with mu held.
func (c *flowConn) drop() {
	c.closed = true
	c.lim.queued.Add(-int64(len(c.queue)))
	c.queue, c.qBytes, c.partial = nil, 0, nil
	c.checkCongestion()
}

// flushAndClose lets the writer finish (bounded) and closes the socket.
func (c *flowConn) flushAndClose() error {
	c.mu.Lock()
	ch, writing := c.flushed, c.writing
	c.mu.Unlock()
	if writing {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlush))
		<-ch
	}
	return c.closeSocket()
}

// Close writes what mochi already wrote (a CONNACK refusal, a DISCONNECT)
// and closes the connection.
func (c *flowConn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.kick() // acks Write held back
		c.drop()
	}
	c.mu.Unlock()
	return c.flushAndClose()
}

// waitFlushed waits until the writer has written everything (for tests).
func (c *flowConn) waitFlushed() {
	c.mu.Lock()
	ch, writing := c.flushed, c.writing
	c.mu.Unlock()
	if writing {
		<-ch
	}
}

// queueLen is the number of publishes waiting (for tests).
func (c *flowConn) queueLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}
