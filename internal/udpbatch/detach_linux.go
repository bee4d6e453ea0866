package udpbatch

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
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
// writeWait.

// writeWait bounds the wait for room in a full send buffer.
const writeWaitMS = 1000

var errFull = errors.New("udpbatch: send buffer full for 1 s")

type detached struct {
	fd    int
	epfd  int
	ep    *os.File // the epoll instance (epfd) holding fd for input; in Go's poller
	epRaw syscall.RawConn

	mu     sync.RWMutex // read-held around each system call on fd; close takes it
	closed bool
}

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
	_ = c.Close() // the poller forgets the socket; fd keeps it open
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

// unwatch takes the socket out of its own epoll instance.
func (d *detached) unwatch() error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return net.ErrClosed
	}
	return unix.EpollCtl(d.epfd, unix.EPOLL_CTL_DEL, d.fd, nil)
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
	for {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, writeWaitMS)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
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
	d.mu.Unlock()
	return errors.Join(err, d.ep.Close())
}
