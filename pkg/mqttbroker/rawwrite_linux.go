//go:build linux

package mqttbroker

import (
	"fmt"
	"io"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovec bounds the buffers of one writev (IOV_MAX is 1024 on Linux and
// the BSDs).
const maxIovec = 1024

// rawWriter reads and writes a plain socket with raw system calls: the
// socket is non-blocking, so a call returns at once and there is nothing
// to hand off, but telling Go's scheduler that a system call began (as
// net.Conn does) wakes its sysmon thread whenever every P was idle, which
// at light load is at nearly every message (internal/udpbatch has the
// measurement; perf put sysmon at 15 % of mqttd's CPU at 2,000
// deliveries/s). A read that finds nothing waits in Go's poller as
// net.Conn's does, deadlines included.
type rawWriter struct{ *rawState }

type rawState struct {
	rc syscall.RawConn

	// writeNow's arguments and results (it runs under flowConn.mu).
	iov     []unix.Iovec
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool

	// read's (one reader: mochi's read loop).
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool
	tryFn  func(fd uintptr) bool // readFn that does not wait
}

// newRawWriter returns one that is not ok for a connection that is not a
// plain socket (TLS, websocket): those always use net.Conn and write from
// the writer goroutine.
func newRawWriter(c net.Conn) rawWriter {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return rawWriter{}
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return rawWriter{}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return rawWriter{}
	}
	s := &rawState{rc: rc}
	s.writeFn = func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&s.iov[0])), uintptr(len(s.iov)))
			if e == unix.EINTR {
				continue
			}
			s.wn, s.werrno = int(r), e
			return true // one attempt: never wait for the socket
		}
	}
	// readOnce makes one read; on EAGAIN it returns false (wait in Go's
	// poller) when wait is set, else reports EAGAIN.
	readOnce := func(fd uintptr, wait bool) bool {
		for {
			r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(s.rbuf))), uintptr(len(s.rbuf)))
			if e == unix.EINTR {
				continue
			}
			if e == unix.EAGAIN && wait {
				return false
			}
			s.rn, s.rerrno = int(r), e
			return true
		}
	}
	s.readFn = func(fd uintptr) bool { return readOnce(fd, true) }
	s.tryFn = func(fd uintptr) bool { return readOnce(fd, false) }
	return rawWriter{s}
}

func (w rawWriter) ok() bool { return w.rawState != nil }

// writeNow writes what the socket takes of bufs now and returns the bytes
// written; 0 and no error when the socket's buffer is full.
func (w rawWriter) writeNow(bufs [][]byte) (int, error) {
	if len(bufs) > maxIovec {
		bufs = bufs[:maxIovec]
	}
	w.iov = w.iov[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: unsafe.SliceData(b)}
		v.SetLen(len(b))
		w.iov = append(w.iov, v)
	}
	if len(w.iov) == 0 {
		return 0, nil
	}
	w.wn, w.werrno = 0, 0
	err := w.rc.Write(w.writeFn)
	clear(w.iov) // no pointers into mochi's buffers kept
	n := max(w.wn, 0)
	switch {
	case err != nil:
		return 0, fmt.Errorf("mqttbroker: write: %w", err)
	case w.werrno == unix.EAGAIN:
		return 0, nil
	case w.werrno != 0:
		return 0, fmt.Errorf("mqttbroker: write: %w", w.werrno)
	}
	return n, nil
}

// read reads what the socket holds into p, waiting for data if there is
// none; io.EOF when the peer has closed.
func (w rawWriter) read(p []byte) (int, error) {
	return w.readWith(p, w.readFn)
}

// tryRead is read without the wait: errNoInput when there is no data.
func (w rawWriter) tryRead(p []byte) (int, error) {
	return w.readWith(p, w.tryFn)
}

func (w rawWriter) readWith(p []byte, fn func(fd uintptr) bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w.rbuf, w.rn, w.rerrno = p, 0, 0
	err := w.rc.Read(fn)
	w.rbuf = nil
	switch {
	case err != nil:
		return 0, fmt.Errorf("mqttbroker: read: %w", err)
	case w.rerrno == unix.EAGAIN:
		return 0, errNoInput
	case w.rerrno != 0:
		return 0, fmt.Errorf("mqttbroker: read: %w", w.rerrno)
	case w.rn == 0:
		return 0, io.EOF
	}
	return w.rn, nil
}

// control runs f with the socket's descriptor, which stays open meanwhile.
func (w rawWriter) control(f func(fd uintptr)) error {
	return w.rc.Control(f)
}
