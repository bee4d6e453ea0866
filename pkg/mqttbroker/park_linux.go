//go:build linux

package mqttbroker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// parker waits for input on the sockets of parked read loops with one
// epoll instance and one goroutine for all of them (see park.go). Each
// park arms the socket once (EPOLLONESHOT) under a fresh id, so an event
// that comes in after its loop was woken some other way finds no entry and
// is ignored; ids are never reused.
type parker struct {
	epfd, wakefd int
	log          *slog.Logger
	done         chan struct{}
	count        atomic.Int64 // parked now (mqttd_parked_connections)
	sweeps       atomic.Int64 // sweeps so far (see flowConn.wakeRead)

	mu      sync.Mutex
	conns   map[uint64]parkedLoop
	nextID  uint64
	closed  bool
	watched map[*flowConn]struct{} // connections whose loops may wait in their goroutines
	stop    chan struct{}          // ends the sweep
	swept   chan struct{}
}

type parkedLoop struct {
	c      *flowConn
	resume func()
}

// stopID is the wake-up eventfd's id in the epoll set.
const stopID = 0

func newParker(log *slog.Logger) (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("mqttbroker: epoll: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("mqttbroker: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEventID(&ev, stopID)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("mqttbroker: epoll: %w", err)
	}
	p := &parker{
		epfd: epfd, wakefd: wakefd, log: log, done: make(chan struct{}),
		conns: map[uint64]parkedLoop{}, nextID: stopID,
		watched: map[*flowConn]struct{}{}, stop: make(chan struct{}), swept: make(chan struct{}),
	}
	go p.wait()
	go p.sweep()
	return p, nil
}

// watch adds c to the sweep set (once).
func (p *parker) watch(c *flowConn) {
	if c.watched {
		return
	}
	p.mu.Lock()
	if !p.closed {
		c.watched = true
		p.watched[c] = struct{}{}
	}
	p.mu.Unlock()
}

func (p *parker) unwatch(c *flowConn) {
	p.mu.Lock()
	delete(p.watched, c)
	p.mu.Unlock()
}

// sweep wakes, every parkAfter, the reads that have waited for input since
// before the previous sweep, so that their loops park.
func (p *parker) sweep() {
	defer close(p.swept)
	t := time.NewTicker(parkAfter)
	defer t.Stop()
	var conns []*flowConn
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		n := p.sweeps.Add(1)
		p.mu.Lock()
		conns = conns[:0]
		for c := range p.watched {
			conns = append(conns, c)
		}
		p.mu.Unlock()
		for _, c := range conns {
			c.wakeRead(n)
		}
		clear(conns)
	}
}

// The 64 bits of an epoll event's data, as Fd and Pad on every Linux port.
func setEventID(ev *unix.EpollEvent, id uint64) {
	ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
}

func eventID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// park takes c's wait over: false when it cannot (the broker or the
// connection is closing, or epoll refused), and the loop reads as usual.
func (p *parker) park(c *flowConn, resume func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || c.closing.Load() {
		return false
	}
	p.nextID++
	id := p.nextID
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
	setEventID(&ev, id)
	op := unix.EPOLL_CTL_MOD
	if !c.polled {
		op = unix.EPOLL_CTL_ADD
	}
	var cerr error
	// Under Control the descriptor cannot be closed and reused meanwhile.
	err := c.raw.control(func(fd uintptr) { cerr = unix.EpollCtl(p.epfd, op, int(fd), &ev) })
	if err == nil {
		err = cerr
	}
	if err != nil {
		if !errors.Is(err, unix.EBADF) {
			p.log.Debug("read loop not parked", "err", err)
		}
		return false
	}
	c.polled = true
	c.parkID = id
	p.conns[id] = parkedLoop{c: c, resume: resume}
	p.count.Add(1)
	if !c.rdeadline.IsZero() {
		// A timer per park, for this park's id: one reused would let a
		// callback that ran late wake a later park.
		c.parkTimer = time.AfterFunc(time.Until(c.rdeadline), func() { p.wake(id) })
	}
	return true
}

// wakeConn brings c's loop back if it is parked.
func (p *parker) wakeConn(c *flowConn) {
	p.mu.Lock()
	id := c.parkID
	p.mu.Unlock()
	if id != 0 {
		p.wake(id)
	}
}

// wake resumes the loop parked under id, once, in a goroutine of its own.
func (p *parker) wake(id uint64) {
	p.mu.Lock()
	l, ok := p.conns[id]
	if ok {
		delete(p.conns, id)
		l.c.parkID = 0
		if l.c.parkTimer != nil {
			l.c.parkTimer.Stop()
			l.c.parkTimer = nil
		}
		p.count.Add(-1)
	}
	p.mu.Unlock()
	if ok {
		go l.c.run(l.resume)
	}
}

func (p *parker) wait() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			p.log.Error("parked connections: epoll failed; waking them all", "err", err)
			p.wakeAll()
			return
		}
		for i := range events[:n] {
			id := eventID(&events[i])
			if id == stopID {
				return
			}
			p.wake(id)
		}
	}
}

func (p *parker) wakeAll() {
	p.mu.Lock()
	p.closed = true
	ids := make([]uint64, 0, len(p.conns))
	for id := range p.conns {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	for _, id := range ids {
		p.wake(id)
	}
}

// Close stops the parker; loops still parked are resumed and from then on
// wait in their goroutines.
func (p *parker) Close() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(p.wakefd, one[:])
	<-p.done
	close(p.stop)
	<-p.swept
	p.wakeAll()
	unix.Close(p.epfd)
	unix.Close(p.wakefd)
}
