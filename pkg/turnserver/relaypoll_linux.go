package turnserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"github.com/p2pd-go/p2pd/internal/udpbatch"
	"golang.org/x/sys/unix"
)

// relayPoller reads, from one goroutine, every relay socket that has a
// channel binding. pion reads each relay socket in a goroutine of its own,
// so under a flood from many peers every datagram woke a goroutine that
// then sent one ChannelData frame; the poller learns from an epoll set
// which of them have data, relays what it reads on the bindings it holds
// (relayConn.toClient) and sends all of it to the clients in one batch per
// round. A datagram it cannot relay itself is handed to pion's goroutine
// for that socket (relayConn.slow), which otherwise waits.
//
// The epoll set is level-triggered; its own descriptor is handed to Go's
// poller, which wakes the goroutine when any socket of the set is readable.
type relayPoller struct {
	g    *batchGroup
	file *os.File // the epoll descriptor
	raw  syscall.RawConn
	epfd int

	log *slog.Logger

	mu     sync.Mutex
	closed bool              // epfd is closed (or about to be): no more epoll_ctl
	conns  map[int32]*polled // by the socket's descriptor
	// What rounds work with, made once (a closure per call escapes).
	events []unix.EpollEvent
	msgs   []udpbatch.Msg
	round  func(fd uintptr) bool
	done   chan struct{}
}

// polled is one socket in the set.
type polled struct {
	rc *relayConn
	pc *udpbatch.Conn // the poller's own reader of the socket
	fd int32
}

func newRelayPoller(g *batchGroup, log *slog.Logger) (*relayPoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("turnserver: epoll: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("turnserver: epoll: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "relay-epoll")
	raw, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("turnserver: epoll: %w", err)
	}
	p := &relayPoller{
		g: g, file: f, raw: raw, epfd: epfd, log: log, conns: map[int32]*polled{},
		events: make([]unix.EpollEvent, 64), msgs: make([]udpbatch.Msg, relayBatch),
		done: make(chan struct{}),
	}
	for i := range p.msgs {
		p.msgs[i].Buf = make([]byte, batchMTU)
	}
	p.round = p.serve
	go p.run()
	return p, nil
}

// add puts rc's socket in the set; false leaves rc to read it itself. It
// is called by the one goroutine that read the socket until now, once it
// has stopped (relayConn.ReadFrom), so the two never read it at once.
func (p *relayPoller) add(rc *relayConn) bool {
	if p == nil {
		return false
	}
	bc, ok := rc.PacketConn.(*batchConn)
	if !ok {
		return false
	}
	pc := bc.pc.Load().Sibling(relayBatch)
	var fd int32
	var cerr error
	err := pc.Control(func(d uintptr) {
		fd = int32(d)
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: fd}
		p.mu.Lock()
		defer p.mu.Unlock()
		// Close marks rc closed before it calls remove, which waits for
		// p.mu: a socket closing now is not added behind its back.
		if p.closed || rc.closed.Load() {
			cerr = net.ErrClosed
			return
		}
		if cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(d), &ev); cerr == nil {
			p.conns[fd] = &polled{rc: rc, pc: pc, fd: fd}
		}
	})
	if err != nil || cerr != nil {
		return false
	}
	// pion's goroutine no longer reads it: data must wake only the poller.
	_ = pc.Unwatch()
	return true
}

// remove takes rc's socket out of the set before it closes.
func (p *relayPoller) remove(rc *relayConn) {
	bc, ok := rc.PacketConn.(*batchConn)
	if p == nil || !ok {
		return
	}
	_ = bc.pc.Load().Control(func(d uintptr) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if q := p.conns[int32(d)]; q != nil && q.rc == rc {
			delete(p.conns, int32(d))
			if !p.closed {
				_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(d), nil)
			}
		}
	})
}

func (p *relayPoller) run() {
	defer close(p.done)
	// serve returns false until the set has nothing left to read: Go's
	// poller then waits for the epoll descriptor to be readable again.
	_ = p.raw.Read(p.round)
}

// serve works through rounds of ready sockets until none is left.
func (p *relayPoller) serve(uintptr) bool {
	for {
		n, err := epollWait(p.epfd, p.events)
		if err != nil {
			// Not reached while the descriptor is open (it is closed only
			// after serve returns). Sockets already handed over would wait
			// for a poller that is gone, so say so loudly.
			p.log.Error("relay poller stopped: ChannelData from peers is no longer relayed", "err", err)
			return true
		}
		if n == 0 {
			p.g.flush()
			return false
		}
		for i := range n {
			p.mu.Lock()
			q := p.conns[p.events[i].Fd]
			p.mu.Unlock()
			if q != nil {
				p.read(q)
			}
		}
		p.g.flush()
	}
}

// read takes one batch from q's socket and relays or hands over each
// datagram.
func (p *relayPoller) read(q *polled) {
	n, err := q.pc.TryRead(p.msgs)
	if err != nil {
		if errors.Is(err, net.ErrClosed) { // closing: the kernel left the set with the descriptor
			p.mu.Lock()
			if p.conns[q.fd] == q {
				delete(p.conns, q.fd)
			}
			p.mu.Unlock()
		}
		return
	}
	for i := range n {
		m := &p.msgs[i]
		q.rc.received(m.Buf[:m.N], m.Addr)
	}
}

// epollWait is epoll_wait without waiting, as a raw system call (see
// udpbatch on why the scheduler is not told).
func epollWait(epfd int, events []unix.EpollEvent) (int, error) {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		default:
			return 0, e
		}
	}
}

// close ends the poller.
func (p *relayPoller) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.file.Close()
	<-p.done
}
