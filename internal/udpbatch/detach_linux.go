package udpbatch

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Detached sockets. Go's poller registers every socket it knows for input
// and output, edge-triggered. A UDP socket signals output readiness each
// time a datagram it sent leaves its send buffer (on loopback, inside the
// send call), so every send woke the thread parked in the poller's
// epoll_pwait: a context switch and an empty netpoll per batch sent,
// though nothing ever waits to write a UDP socket. Under turnd's uclient
// flood half of the poller's wake-ups carried nothing but EPOLLOUT.
//
// Detach takes a socket away from Go's poller: its descriptor is
// duplicated, the original *net.UDPConn closed (so the poller forgets it),
// and the duplicate put, for input only, in an epoll instance of its own
// that Go's poller watches instead. A reader that finds the socket empty
// waits on that instance; a send wakes nobody. A send that finds the
// buffer full (EAGAIN, rare for UDP) waits for room in poll(2), at most
// writeWaitMS; while the buffer stays full after such a wait, further sends
// fail at once (dropped, as UDP may) until one gets through, so a stalled
// interface holds a writer for one wait, not one per datagram.

// writeWaitMS bounds the wait for room in a full send buffer.
const writeWaitMS = 1000

var errFull = errors.New("udpbatch: send buffer full for 1 s")

type detached struct {
	fd    int
	epfd  int
	ep    *os.File // the epoll instance (epfd) holding fd for input; in Go's poller
	epRaw syscall.RawConn
	full  atomic.Bool // a wait for room timed out and no send got through since

	mu        sync.RWMutex // read-held around each system call on fd; close takes it
	closed    bool
	unwatched bool // ep is closed: nothing waits for input (unwatch)
}

var errUnwatched = errors.New("udpbatch: read: the socket is not watched (Unwatch)")

func detach(c *net.UDPConn) (*detached, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udpbatch: detach: %w", err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("udpbatch: detach: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("udpbatch: detach: dup: %w", derr)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("udpbatch: detach: epoll: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := errors.Join(unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev), unix.SetNonblock(epfd, true)); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(fd)
		return nil, fmt.Errorf("udpbatch: detach: epoll: %w", err)
	}
	ep := os.NewFile(uintptr(epfd), "udpbatch-epoll") // non-blocking: Go's poller takes it
	epRaw, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		_ = unix.Close(fd)
		return nil, fmt.Errorf("udpbatch: detach: %w", err)
	}
	return &detached{fd: fd, epfd: epfd, ep: ep, epRaw: epRaw}, nil
}

// run calls f with the socket's descriptor unless it is closed (ok false).
func (d *detached) run(f func(fd uintptr) bool) (done, ok bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return true, false
	}
	return f(uintptr(d.fd)), true
}

// unwatch closes the socket's own epoll instance: nothing waits for its
// input any more.
func (d *detached) unwatch() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return net.ErrClosed
	}
	if d.unwatched {
		return nil
	}
	d.unwatched = true
	return d.ep.Close()
}

func (d *detached) isClosed() bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.closed
}

// waitWritable waits until the socket's send buffer has room.
func (d *detached) waitWritable() error {
	d.mu.RLock()
	fd, closed := d.fd, d.closed
	d.mu.RUnlock()
	if closed {
		return net.ErrClosed
	}
	if d.full.Load() {
		return errFull
	}
	for {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, writeWaitMS)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			d.full.Store(true)
			return errFull
		}
		return nil
	}
}

// close closes the socket, then the epoll instance (which wakes a reader
// waiting on it).
func (d *detached) close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return net.ErrClosed
	}
	d.closed = true
	err := unix.Close(d.fd)
	unwatched := d.unwatched
	d.mu.Unlock()
	if unwatched {
		return err
	}
	return errors.Join(err, d.ep.Close())
}
