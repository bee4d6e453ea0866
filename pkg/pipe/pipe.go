// Package pipe gives a stream connection P2PD's pipe semantics: incoming
// messages go to every matching subscription, each with its own bounded
// queue (or a handler instead of a queue); Recv waits for a message on a
// subscription; close callbacks report the end of the connection.
//
// A subscription is a pair of regular expressions (Go RE2 syntax). The
// message pattern is searched in the payload, the address pattern in the
// sender's "ip:port" (IPv6 as "[ip]:port"); an empty pattern matches
// everything, so the zero Sub matches every message. A message that no
// subscription matches is discarded and counted.
//
// How the byte stream is cut into messages is chosen by Framing.
package pipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultQueueSize   = 1000    // messages per subscription queue
	DefaultQueueBytes  = 4 << 20 // bytes per subscription queue
	DefaultMaxMessage  = 1 << 20 // bytes
	DefaultRecvTimeout = 2 * time.Second
)

// Errors.
var (
	ErrTimeout   = errors.New("pipe: recv timed out")
	ErrNoSub     = errors.New("pipe: no such subscription")
	ErrSubExists = errors.New("pipe: subscription exists")
	ErrClosed    = errors.New("pipe: closed")
)

// Sub identifies a subscription: a message pattern and an address pattern.
type Sub struct {
	Msg  string // searched in the payload; "" matches all
	Addr string // searched in "ip:port"; "" matches all
}

// Message is one received message.
type Message struct {
	Data []byte         // shared by every queue it went to: do not modify
	From netip.AddrPort // the remote end
}

// Options configure a pipe. Zero fields take the defaults.
type Options struct {
	Framing    Framing
	MaxMessage int // largest message sent or received
	QueueSize  int // per subscription; the oldest message is dropped when full
	// QueueBytes bounds the bytes queued per subscription the same way
	// (DefaultQueueBytes), so a peer cannot fill memory with large messages.
	QueueBytes int
	Metrics    *Metrics
	Log        *slog.Logger
}

// Pipe wraps a stream connection. It is safe for concurrent use.
type Pipe struct {
	conn net.Conn
	opts Options
	from netip.AddrPort
	dec  *decoder
	done chan struct{}

	wmu sync.Mutex // serialises writes

	mu       sync.Mutex
	subs     map[Sub]*subscription
	onClose  []func(error)
	cbsRan   bool // close callbacks were taken by the reader
	closed   bool
	err      error // why the pipe closed; nil for a clean end
	localEnd bool
	dropped  uint64
	sent     Counts // messages and payload bytes sent
	recvd    Counts // messages and payload bytes received
}

// Counts are messages and their payload bytes.
type Counts struct {
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
}

// Stats are a pipe's traffic and queue totals.
type Stats struct {
	Sent     Counts `json:"sent"`
	Received Counts `json:"received"`
	Queued   int    `json:"queued"`       // messages waiting in all queues
	QueuedB  int    `json:"queued_bytes"` // their payload bytes
	Dropped  uint64 `json:"dropped"`
}

// Stats returns the pipe's totals so far.
func (p *Pipe) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Stats{Sent: p.sent, Received: p.recvd, Dropped: p.dropped}
	for _, sub := range p.subs {
		st.Queued += len(sub.items)
		st.QueuedB += sub.bytes
	}
	return st
}

type subscription struct {
	msg, addr *regexp.Regexp
	handler   func(Message)
	lent      bool // handler gets the reader's buffer for the call only (Divert)
	items     []Message
	max       int
	bytes     int // queued payload bytes
	maxBytes  int
	wake      chan struct{} // closed and replaced when the queue changes
}

// New wraps conn and starts reading from it. The pipe owns conn from now on.
func New(conn net.Conn, opts Options) *Pipe {
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = DefaultMaxMessage
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	p := &Pipe{
		conn: conn,
		opts: opts,
		from: addrPort(conn.RemoteAddr()),
		dec:  newDecoder(opts.Framing, conn, opts.MaxMessage),
		done: make(chan struct{}),
		subs: make(map[Sub]*subscription),
	}
	go p.readLoop()
	return p
}

func addrPort(a net.Addr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// RemoteAddr is the address of the other end.
func (p *Pipe) RemoteAddr() netip.AddrPort { return p.from }

// Subscribe adds a queue for messages matching s.
func (p *Pipe) Subscribe(s Sub) error { return p.subscribe(s, nil) }

// SubscribeFunc adds a subscription whose matching messages are passed to h
// instead of a queue. h runs on the pipe's reader: while it runs, no further
// message is read, so it should return quickly.
func (p *Pipe) SubscribeFunc(s Sub, h func(Message)) error {
	if h == nil {
		return errors.New("pipe: nil handler")
	}
	return p.subscribe(s, h)
}

func (p *Pipe) subscribe(s Sub, h func(Message)) error {
	sub := &subscription{handler: h, max: p.opts.QueueSize, maxBytes: p.opts.QueueBytes, wake: make(chan struct{})}
	var err error
	if sub.msg, err = compile(s.Msg); err != nil {
		return fmt.Errorf("pipe: message pattern: %w", err)
	}
	if sub.addr, err = compile(s.Addr); err != nil {
		return fmt.Errorf("pipe: address pattern: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.subs[s]; ok {
		return fmt.Errorf("%w: %+v", ErrSubExists, s)
	}
	p.subs[s] = sub
	return nil
}

func compile(pat string) (*regexp.Regexp, error) {
	if pat == "" {
		return nil, nil
	}
	return regexp.Compile(pat)
}

// Divert atomically turns the queue of subscription s into handler h: it
// returns the messages queued so far, and every later match goes to h
// instead, with none lost or duplicated in between. h runs on the pipe's
// reader, so a blocking h holds the peer back (flow control); it must
// return once its consumer is gone. Undivert turns the queue back on.
//
// h is lent m.Data for the call only (the reader reuses the buffer, which
// spares a large allocation per message on a busy relay): h must not keep
// it. Requeue copies what it is given.
func (p *Pipe) Divert(s Sub, h func(Message)) ([]Message, error) {
	if h == nil {
		return nil, errors.New("pipe: nil handler")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sub, ok := p.subs[s]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %+v", ErrNoSub, s)
	case sub.handler != nil:
		return nil, fmt.Errorf("pipe: subscription %+v already has a handler", s)
	}
	items := sub.items
	sub.items, sub.bytes, sub.handler, sub.lent = nil, 0, h, true
	close(sub.wake) // waiting Recvs see the handler and return
	sub.wake = make(chan struct{})
	return items, nil
}

// Undivert ends a Divert: matches are queued again.
func (p *Pipe) Undivert(s Sub) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sub, ok := p.subs[s]; ok {
		sub.handler, sub.lent = nil, false
	}
}

// Unsubscribe removes a subscription and its queued messages.
func (p *Pipe) Unsubscribe(s Sub) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	sub, ok := p.subs[s]
	if !ok {
		return fmt.Errorf("%w: %+v", ErrNoSub, s)
	}
	delete(p.subs, s)
	close(sub.wake)
	return nil
}

// Recv returns the oldest queued message of subscription s, waiting up to
// timeout (DefaultRecvTimeout when <= 0) or until ctx ends. It returns
// ErrTimeout when nothing came, ErrNoSub when s is not (or no longer)
// subscribed, and ErrClosed once the pipe closed and the queue is empty.
func (p *Pipe) Recv(ctx context.Context, s Sub, timeout time.Duration) (Message, error) {
	if timeout <= 0 {
		timeout = DefaultRecvTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		p.mu.Lock()
		sub, ok := p.subs[s]
		switch {
		case !ok:
			p.mu.Unlock()
			return Message{}, fmt.Errorf("%w: %+v", ErrNoSub, s)
		case sub.handler != nil:
			p.mu.Unlock()
			return Message{}, fmt.Errorf("pipe: subscription %+v has a handler, not a queue", s)
		case len(sub.items) > 0:
			m := sub.items[0]
			sub.items[0] = Message{}
			sub.items = sub.items[1:]
			sub.bytes -= len(m.Data)
			p.mu.Unlock()
			return m, nil
		case p.closed:
			err := p.err
			p.mu.Unlock()
			if err != nil {
				return Message{}, fmt.Errorf("%w: %w", ErrClosed, err)
			}
			return Message{}, ErrClosed
		}
		wake := sub.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-p.done:
		case <-timer.C:
			return Message{}, ErrTimeout
		case <-ctx.Done():
			return Message{}, fmt.Errorf("pipe: recv: %w", ctx.Err())
		}
	}
}

// Send writes one message. A failed write closes the pipe, since the stream
// may hold part of the message.
func (p *Pipe) Send(ctx context.Context, data []byte) error {
	wire, release, err := p.opts.Framing.encodePooled(data, p.opts.MaxMessage)
	if err != nil {
		return err
	}
	defer release() // after the write: the conn does not keep wire
	select {
	case <-p.done:
		return ErrClosed
	default:
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { p.conn.SetWriteDeadline(time.Unix(1, 0)); close(fired) })
	_, err = p.conn.Write(wire)
	if !stop() {
		<-fired // the past deadline is set: clear it only after that
		p.conn.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		p.shutdown(err)
		return fmt.Errorf("pipe: send: %w", err)
	}
	p.mu.Lock()
	p.sent.Messages++
	p.sent.Bytes += uint64(len(data))
	p.mu.Unlock()
	if p.opts.Metrics != nil {
		p.opts.Metrics.Sent.Inc()
	}
	return nil
}

// OnClose registers f to be called once with the reason the pipe closed (nil
// for a clean end or a local Close). Callbacks run in registration order on
// the pipe's reader after it stops; if that already happened, f runs at once
// on the caller's goroutine.
func (p *Pipe) OnClose(f func(error)) {
	p.mu.Lock()
	if !p.cbsRan {
		p.onClose = append(p.onClose, f)
		p.mu.Unlock()
		return
	}
	err := p.err
	p.mu.Unlock()
	f(err)
}

// Close closes the connection. Queued messages stay readable with Recv.
func (p *Pipe) Close() error {
	p.mu.Lock()
	p.localEnd = true
	p.mu.Unlock()
	if err := p.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("pipe: close: %w", err)
	}
	return nil
}

// Done is closed once the pipe has closed and its close callbacks ran.
func (p *Pipe) Done() <-chan struct{} { return p.done }

// Err returns why the pipe closed (nil while open or after a clean end).
func (p *Pipe) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Dropped returns how many queued messages were dropped because a queue was
// full.
func (p *Pipe) Dropped() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

func (p *Pipe) readLoop() {
	var err error
	for {
		var data []byte
		var release func()
		data, release, err = p.dec.next()
		if err != nil {
			break
		}
		p.deliver(Message{Data: data, From: p.from}, release)
	}
	p.shutdown(err)
	p.conn.Close()
	p.mu.Lock()
	cbs := p.onClose
	p.onClose = nil
	p.cbsRan = true
	reason := p.err
	p.mu.Unlock()
	close(p.done)
	for _, f := range cbs {
		f(reason)
	}
}

// shutdown marks the pipe closed with the first reason seen.
func (p *Pipe) shutdown(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	if p.localEnd || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	p.err = err
	if err != nil {
		p.opts.Log.Debug("pipe: closed", "remote", p.from, "err", err)
		p.conn.Close() // wakes the reader after a failed write
	}
}

// push queues m on sub, dropping the oldest beyond the bounds (p.mu held).
func (p *Pipe) push(sub *subscription, m Message) {
	for len(sub.items) > 0 && (len(sub.items) >= sub.max || sub.bytes+len(m.Data) > sub.maxBytes) {
		sub.bytes -= len(sub.items[0].Data)
		sub.items[0] = Message{}
		sub.items = sub.items[1:]
		p.dropped++
		if p.opts.Metrics != nil {
			p.opts.Metrics.Dropped.Inc()
		}
	}
	sub.items = append(sub.items, m)
	sub.bytes += len(m.Data)
	close(sub.wake)
	sub.wake = make(chan struct{})
}

// Requeue puts a message a diverted handler could not pass on back into
// subscription s's queue (behind what is queued), so it is not lost.
func (p *Pipe) Requeue(s Sub, m Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	sub, ok := p.subs[s]
	if !ok {
		return fmt.Errorf("%w: %+v", ErrNoSub, s)
	}
	m.Data = bytes.Clone(m.Data) // it may be a lent buffer
	p.push(sub, m)
	return nil
}

// deliver hands m to every matching subscription. With release, m.Data
// is the reader's buffer: queues and keeping handlers get one copy of it,
// Divert handlers the buffer itself, which is released afterwards.
func (p *Pipe) deliver(m Message, release func()) {
	addr := m.From.String()
	var keep, lend []func(Message)
	matched, cloned := false, release == nil
	owned := m
	p.mu.Lock()
	p.recvd.Messages++
	p.recvd.Bytes += uint64(len(m.Data))
	for _, sub := range p.subs {
		if (sub.msg != nil && !sub.msg.Match(m.Data)) || (sub.addr != nil && !sub.addr.MatchString(addr)) {
			continue
		}
		matched = true
		if sub.lent {
			lend = append(lend, sub.handler)
			continue
		}
		if !cloned {
			owned.Data, cloned = bytes.Clone(m.Data), true
		}
		if sub.handler != nil {
			keep = append(keep, sub.handler)
			continue
		}
		p.push(sub, owned)
	}
	p.mu.Unlock()
	if p.opts.Metrics != nil {
		p.opts.Metrics.Received.Inc()
		if !matched {
			p.opts.Metrics.Unmatched.Inc()
		}
	}
	for _, h := range keep {
		h(owned)
	}
	for _, h := range lend {
		h(m)
	}
	if release != nil {
		release()
	}
}
