// Package resume gives a byte stream (a net.Conn) that survives the loss of
// the connection under it: it runs over a set of reliable, authenticated
// paths (p2pd's Noise pipes) and moves between them without losing,
// duplicating or reordering a byte.
//
// Every data frame carries the stream offset of its first byte. The sender
// keeps what the peer's application has not read yet (at most
// Options.Window bytes; Write blocks beyond, which is the backpressure), the
// receiver acknowledges what its application read, and each new path starts
// with both sides saying how much they have received, so the sender resends
// from there. Data goes over the best ready path (highest priority, then the
// newest); when it dies the next best takes over, resending from the last
// acknowledgement, and the receiver drops what it already has. Each path
// carries heartbeats, so a path that goes silent (a cut, a dropped NAT
// mapping) is declared dead after Options.IdleTimeout. Only when the last
// path is gone does the stream fail.
package resume

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Options tune a Conn. The zero value is usable.
type Options struct {
	// Window bounds the bytes written but not yet read by the peer's
	// application (default 1 MiB).
	Window int
	// Heartbeat is how often an otherwise idle path sends a ping (default
	// 1 s); IdleTimeout is how long a path may stay silent, or a write on
	// it may block, before it is declared dead (default 8 s).
	Heartbeat, IdleTimeout time.Duration
	// Linger is how long Close waits for the peer to read what was written
	// (default 1 s).
	Linger time.Duration
	// OnControl receives the peer's control messages (SendControl), on the
	// path's reader: it must not block.
	OnControl func([]byte)
	// OnEvent is told about path changes, in order, on its own goroutine.
	OnEvent func(Event)
	Log     *slog.Logger
}

// Event types.
const (
	EventReady  = "ready"  // a path finished its attach exchange
	EventActive = "active" // data now goes over Path (Prev before)
	EventDown   = "down"   // a path died (Err says why)
)

// Event is a change of the paths.
type Event struct {
	Type string
	Path string // the path's label
	Prev string // EventActive: the path data went over before ("" at first)
	Err  error  // EventDown
	Left int    // EventDown: paths left
	// Attached (EventDown): the path had finished its attach exchange.
	Attached bool
}

// PathInfo describes one attached path.
type PathInfo struct {
	Label         string
	Local, Remote net.Addr
	Ready, Active bool
}

// ErrPathsGone is the failure of a stream whose every path died.
var ErrPathsGone = errors.New("resume: every path is gone")

// ErrUnread is returned by Close when the peer's application had not read
// everything written.
var ErrUnread = errors.New("resume: closed before the peer read everything")

// ErrClosed is returned by operations on a locally closed Conn.
var ErrClosed = net.ErrClosed

type path struct {
	c     net.Conn
	label string
	prio  int
	order int
	ready bool
	peer  uint64 // what the peer had received when it attached this path
	wmu   sync.Mutex
	wbuf  []byte
	done  chan struct{}
	once  sync.Once
}

// Conn is the resumable stream. It is safe for concurrent use as a
// net.Conn: one reader and one writer at a time.
type Conn struct {
	opts  Options
	mu    sync.Mutex
	wcond *sync.Cond // writers, Close: room in the window, acks
	rcond *sync.Cond // readers: data, fin, failure
	paths []*path
	order int
	act   *path
	local net.Addr
	raddr net.Addr

	// sending
	buf     []byte // bytes acked..written
	acked   uint64 // the peer's application read up to here
	written uint64
	next    uint64 // next offset to send on act
	ctrl    [][]byte

	// receiving
	rbuf     []byte
	received uint64
	consumed uint64
	ackSent  uint64
	finSeen  bool
	finAt    uint64

	closing bool
	ready   bool  // a path finished its attach exchange once
	err     error // the stream failed: every path gone, or a protocol error
	done    chan struct{}
	stop    sync.Once
	kick    chan struct{}
	rdl     time.Time
	wdl     time.Time
	rtimer  *time.Timer
	wtimer  *time.Timer

	evq    []Event
	evKick chan struct{}
}

// New starts a stream over its first path c (see Attach for label and
// prio). Both ends of c must call New.
func New(c net.Conn, label string, prio int, o Options) *Conn {
	if o.Window <= 0 {
		o.Window = 1 << 20
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 8 * time.Second
	}
	if o.Linger <= 0 {
		o.Linger = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Conn{opts: o, done: make(chan struct{}), kick: make(chan struct{}, 1), evKick: make(chan struct{}, 1),
		local: c.LocalAddr(), raddr: c.RemoteAddr()}
	s.wcond = sync.NewCond(&s.mu)
	s.rcond = sync.NewCond(&s.mu)
	go s.pump()
	go s.events()
	_ = s.Attach(c, label, prio)
	return s
}

// Attach adds path c to the stream. Both ends must attach the same
// connection. label names it in events; data prefers the path with the
// highest prio, and among equals the newest. The Conn owns c from now on.
func (s *Conn) Attach(c net.Conn, label string, prio int) error {
	s.mu.Lock()
	if s.closing || s.err != nil {
		err := s.err
		s.mu.Unlock()
		c.Close()
		if err == nil {
			err = ErrClosed
		}
		return fmt.Errorf("resume: attach %s: %w", label, err)
	}
	s.order++
	p := &path{c: c, label: label, prio: prio, order: s.order, done: make(chan struct{})}
	s.paths = append(s.paths, p)
	s.mu.Unlock()
	go s.readPath(p)
	return nil
}

// Paths lists the attached paths.
func (s *Conn) Paths() []PathInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PathInfo, 0, len(s.paths))
	for _, p := range s.paths {
		out = append(out, PathInfo{Label: p.label, Local: p.c.LocalAddr(), Remote: p.c.RemoteAddr(), Ready: p.ready, Active: p == s.act})
	}
	return out
}

// Active is the label of the path data goes over ("" when none is ready).
func (s *Conn) Active() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.act == nil {
		return ""
	}
	return s.act.label
}

// Done is closed when the stream has ended (closed or failed).
func (s *Conn) Done() <-chan struct{} { return s.done }

// SendControl queues a control message (at most MaxControl bytes) for the
// peer's OnControl. It goes over the active path, after the data written
// before it was sent there.
func (s *Conn) SendControl(m []byte) error {
	if len(m) > MaxControl {
		return fmt.Errorf("resume: control message of %d bytes (at most %d)", len(m), MaxControl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.err != nil {
		return fmt.Errorf("resume: control: %w", s.failure())
	}
	s.ctrl = append(s.ctrl, append([]byte(nil), m...))
	s.poke()
	return nil
}

// failure is why the stream cannot be used (s.mu held).
func (s *Conn) failure() error {
	if s.err != nil {
		return s.err
	}
	return ErrClosed
}

func (s *Conn) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Write implements net.Conn: it returns once p is in the send buffer,
// blocking while the window is full.
func (s *Conn) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for len(b) > 0 {
		switch {
		case s.err != nil:
			return n, s.err
		case s.closing:
			return n, ErrClosed
		case !s.wdl.IsZero() && !time.Now().Before(s.wdl):
			return n, os.ErrDeadlineExceeded
		}
		room := s.opts.Window - len(s.buf)
		if room <= 0 {
			s.wcond.Wait()
			continue
		}
		k := min(room, len(b))
		s.buf = append(s.buf, b[:k]...)
		s.written += uint64(k)
		b = b[k:]
		n += k
		s.poke()
	}
	return n, nil
}

// Read implements net.Conn, in stream order.
func (s *Conn) Read(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		switch {
		case len(s.rbuf) > 0:
			n := copy(b, s.rbuf)
			s.rbuf = s.rbuf[n:]
			if len(s.rbuf) == 0 {
				s.rbuf = nil
			}
			s.consumed += uint64(n)
			if s.consumed-s.ackSent >= uint64(s.opts.Window/4) {
				s.poke()
			}
			return n, nil
		case s.finSeen && s.received == s.finAt:
			return 0, io.EOF
		case s.closing:
			return 0, ErrClosed
		case s.err != nil:
			return 0, s.err
		case !s.rdl.IsZero() && !time.Now().Before(s.rdl):
			return 0, os.ErrDeadlineExceeded
		}
		s.rcond.Wait()
	}
}

// Close waits up to Options.Linger for the peer to read what was written,
// tells it the stream ended, and closes every path. It returns ErrUnread
// when some of what was written was not read by then (the peer closed
// first, every path is gone, or the linger ran out): those bytes are lost.
func (s *Conn) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	s.rcond.Broadcast()
	s.wcond.Broadcast()
	t := time.AfterFunc(s.opts.Linger, func() {
		s.mu.Lock()
		s.wcond.Broadcast()
		s.mu.Unlock()
	})
	until := time.Now().Add(s.opts.Linger)
	for s.acked < s.written && s.err == nil && !s.finSeen && len(s.paths) > 0 && time.Now().Before(until) {
		s.wcond.Wait()
	}
	t.Stop()
	var err error
	if unread := s.written - s.acked; unread > 0 {
		err = fmt.Errorf("%w: %d bytes", ErrUnread, unread)
	}
	p, end := s.act, s.written
	paths := append([]*path(nil), s.paths...)
	s.paths = nil
	s.act = nil
	s.mu.Unlock()
	if p != nil {
		_ = p.write(frame{typ: frameFin, off: end}, s.opts.IdleTimeout)
	}
	for _, q := range paths {
		q.close()
	}
	s.finish()
	return err
}

func (s *Conn) finish() {
	s.stop.Do(func() { close(s.done) })
}

// LocalAddr is the local address of the first path.
func (s *Conn) LocalAddr() net.Addr { return s.local }

// RemoteAddr is the remote address of the first path.
func (s *Conn) RemoteAddr() net.Addr { return s.raddr }

// SetDeadline sets both deadlines.
func (s *Conn) SetDeadline(t time.Time) error {
	_ = s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

// SetReadDeadline makes a blocked and future Read fail after t.
func (s *Conn) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rdl = t
	s.rtimer = s.arm(s.rtimer, t, s.rcond)
	return nil
}

// SetWriteDeadline makes a blocked and future Write fail after t.
func (s *Conn) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wdl = t
	s.wtimer = s.arm(s.wtimer, t, s.wcond)
	return nil
}

func (s *Conn) arm(old *time.Timer, t time.Time, c *sync.Cond) *time.Timer {
	if old != nil {
		old.Stop()
	}
	c.Broadcast()
	if t.IsZero() {
		return nil
	}
	return time.AfterFunc(time.Until(t), func() {
		s.mu.Lock()
		c.Broadcast()
		s.mu.Unlock()
	})
}

// write sends one frame on p with a write deadline.
func (p *path) write(f frame, timeout time.Duration) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.wbuf = appendFrame(p.wbuf[:0], f)
	_ = p.c.SetWriteDeadline(time.Now().Add(timeout))
	_, err := p.c.Write(p.wbuf)
	if cap(p.wbuf) > 2*(headerLen+maxBody) {
		p.wbuf = nil
	}
	return err
}

func (p *path) close() {
	p.once.Do(func() {
		close(p.done)
		p.c.Close()
	})
}

// readPath sends our attach frame on p, starts p's heartbeat, then reads p
// until it fails.
func (s *Conn) readPath(p *path) {
	s.mu.Lock()
	recv := s.received
	s.mu.Unlock()
	if err := p.write(frame{typ: frameAttach, off: recv}, s.opts.IdleTimeout); err != nil {
		s.pathFailed(p, fmt.Errorf("resume: path %s: attach: %w", p.label, err))
		return
	}
	// Only now: the attach must be p's first frame (the peer drops a path
	// whose first frame is anything else), and a heartbeat started with
	// readPath pinged first whenever readPath waited longer than a
	// heartbeat for s.mu or a CPU.
	go s.heartbeat(p)
	heard := &countReader{r: p.c}
	br := bufio.NewReaderSize(heard, 64<<10)
	var buf []byte
	for {
		_ = p.c.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
		var f frame
		var err error
		f, buf, err = readFrame(br, buf)
		if err == nil {
			err = s.handle(p, f)
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = fmt.Errorf("silent for %v: %w", s.opts.IdleTimeout, err)
			}
			if !p.ready && heard.n > 0 && peerClosed(err) {
				// Bytes of this layer came before the close (or the
				// reset our attach provoked): not a peer that never ran
				// it, so not a clean end (pathFailed).
				err = fmt.Errorf("%w: closed after %d bytes, before an attach: %v", ErrProtocol, heard.n, err)
			}
			s.pathFailed(p, fmt.Errorf("resume: path %s: %w", p.label, err))
			return
		}
	}
}

// handle acts on one frame from p.
func (s *Conn) handle(p *path, f frame) error {
	if f.typ == frameControl {
		if !p.ready {
			return fmt.Errorf("%w: control before attach", ErrProtocol)
		}
		if s.opts.OnControl != nil {
			s.opts.OnControl(append([]byte(nil), f.payload...))
		}
		return nil
	}
	if f.typ == framePing && !p.ready {
		// A ping carries nothing; agents before the attach-first fix in
		// readPath could send one ahead of their attach on a busy machine.
		return nil
	}
	s.mu.Lock()
	defer s.flushEvents()
	defer s.mu.Unlock()
	if f.typ != frameAttach && !p.ready {
		return fmt.Errorf("%w: frame type %d before attach", ErrProtocol, f.typ)
	}
	switch f.typ {
	case frameAttach:
		if p.ready {
			return fmt.Errorf("%w: second attach", ErrProtocol)
		}
		// An attach can trail acks the peer sent later on another path,
		// so it may be below acked; pick resends from the larger.
		if f.off > s.written {
			return fmt.Errorf("%w: peer received %d, we wrote %d", ErrProtocol, f.off, s.written)
		}
		p.ready, p.peer = true, f.off
		s.ready = true
		s.evq = append(s.evq, Event{Type: EventReady, Path: p.label})
		s.pick()
	case frameData:
		end := f.off + uint64(len(f.payload))
		switch {
		case f.off > s.received:
			return fmt.Errorf("%w: data at %d, received only %d", ErrProtocol, f.off, s.received)
		case end <= s.received:
			return nil // already have it (resent after a path change)
		case end-s.consumed > uint64(s.opts.Window)+MaxChunk:
			return fmt.Errorf("%w: peer overran the window", ErrProtocol)
		}
		s.rbuf = append(s.rbuf, f.payload[s.received-f.off:]...)
		s.received = end
		s.rcond.Broadcast()
	case frameAck:
		if f.off > s.written {
			return fmt.Errorf("%w: ack of %d, wrote %d", ErrProtocol, f.off, s.written)
		}
		if f.off > s.acked {
			s.buf = s.buf[f.off-s.acked:]
			if len(s.buf) == 0 {
				s.buf = nil
			}
			s.acked = f.off
			s.next = max(s.next, s.acked)
			s.wcond.Broadcast()
		}
	case frameFin:
		if f.off < s.received {
			return fmt.Errorf("%w: end at %d, received %d", ErrProtocol, f.off, s.received)
		}
		s.finSeen, s.finAt = true, f.off
		s.rcond.Broadcast()
		s.wcond.Broadcast()
	}
	return nil
}

// pick makes the best ready path active (s.mu held).
func (s *Conn) pick() { s.pickAfter("") }

// pickAfter is pick after the active path prev died.
func (s *Conn) pickAfter(prev string) {
	var best *path
	for _, p := range s.paths {
		if p.ready && (best == nil || p.prio > best.prio || p.prio == best.prio && p.order > best.order) {
			best = p
		}
	}
	if best == s.act {
		return
	}
	if s.act != nil {
		prev = s.act.label
	}
	s.act = best
	if best == nil {
		return
	}
	// Resend from what the peer is known to have: everything sent before
	// on any path may have died with it.
	s.next = max(best.peer, s.acked)
	// An ack may have died with the old path: send the current one again.
	s.ackSent = 0
	s.evq = append(s.evq, Event{Type: EventActive, Path: best.label, Prev: prev})
	s.poke()
}

// pathFailed drops p; the stream fails when it was the last path.
func (s *Conn) pathFailed(p *path, err error) {
	p.close()
	s.mu.Lock()
	found := false
	for i, q := range s.paths {
		if q == p {
			s.paths = append(s.paths[:i], s.paths[i+1:]...)
			found = true
			break
		}
	}
	if !found { // closed by Close
		s.mu.Unlock()
		return
	}
	s.evq = append(s.evq, Event{Type: EventDown, Path: p.label, Err: err, Left: len(s.paths), Attached: p.ready})
	if s.act == p {
		s.act = nil
		s.pickAfter(p.label)
	}
	switch {
	case len(s.paths) > 0 || s.err != nil:
	case !s.ready && s.written == 0 && peerClosed(err):
		// The first path was closed by the peer before its attach
		// exchange and nothing was written here: the peer closed a pipe
		// that lost its connect race without ever running this layer.
		// A clean end. A timeout, a protocol error or bytes of ours that
		// never left are failures like any other.
		s.err = io.EOF
		s.rcond.Broadcast()
		s.wcond.Broadcast()
	default:
		// Not %w: the last path's io.EOF must not read as a clean end.
		s.err = fmt.Errorf("%w; the last: %v", ErrPathsGone, err)
		s.rcond.Broadcast()
		s.wcond.Broadcast()
		s.opts.Log.Debug("resume: stream failed", "err", err)
	}
	last := len(s.paths) == 0
	s.mu.Unlock()
	s.flushEvents()
	if last {
		s.finish()
	}
}

// heartbeat pings p so the peer's reader sees it alive.
func (s *Conn) heartbeat(p *path) {
	t := time.NewTicker(s.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		if err := p.write(frame{typ: framePing}, s.opts.IdleTimeout); err != nil {
			s.pathFailed(p, fmt.Errorf("resume: path %s: ping: %w", p.label, err))
			return
		}
	}
}

// pump sends control messages, acks and data on the active path.
func (s *Conn) pump() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.kick:
		case <-t.C:
		case <-s.done:
			return
		}
		for s.sendOne() {
		}
	}
}

// sendOne sends the next frame due; false when nothing is.
func (s *Conn) sendOne() bool {
	s.mu.Lock()
	p := s.act
	if p == nil || s.err != nil || s.paths == nil {
		s.mu.Unlock()
		return false
	}
	var f frame
	var end uint64
	switch {
	case len(s.ctrl) > 0:
		f = frame{typ: frameControl, payload: s.ctrl[0]}
		s.ctrl = s.ctrl[1:]
	case s.consumed > s.ackSent:
		f = frame{typ: frameAck, off: s.consumed}
		s.ackSent = s.consumed
	case s.next < s.written:
		end = min(s.written, s.next+MaxChunk)
		// buf is only ever resliced or appended to, so the chunk stays
		// valid after the lock is released.
		f = frame{typ: frameData, off: s.next, payload: s.buf[s.next-s.acked : end-s.acked]}
	default:
		s.mu.Unlock()
		return false
	}
	s.mu.Unlock()
	if err := p.write(f, s.opts.IdleTimeout); err != nil {
		s.pathFailed(p, fmt.Errorf("resume: path %s: write: %w", p.label, err))
		return true
	}
	if f.typ == frameData {
		s.mu.Lock()
		if s.act == p && s.next == f.off {
			s.next = end
		}
		s.mu.Unlock()
	}
	return true
}

// flushEvents wakes the event goroutine (call without s.mu).
func (s *Conn) flushEvents() {
	select {
	case s.evKick <- struct{}{}:
	default:
	}
}

func (s *Conn) events() {
	for {
		select {
		case <-s.evKick:
		case <-s.done:
			s.deliver()
			return
		}
		s.deliver()
	}
}

func (s *Conn) deliver() {
	s.mu.Lock()
	q := s.evq
	s.evq = nil
	s.mu.Unlock()
	if s.opts.OnEvent == nil {
		return
	}
	for _, e := range q {
		s.opts.OnEvent(e)
	}
}
