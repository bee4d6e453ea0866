package udpbatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr: a msghdr and the byte count the kernel fills
// in (Go pads it to the C layout on every architecture).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// half is the state of one direction: its headers, vectors and addresses.
type half struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // big enough for either family
}

func newHalf(n int) half {
	h := half{hdrs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), names: make([]unix.RawSockaddrInet6, n)}
	for i := range h.hdrs {
		h.hdrs[i].hdr.Iov = &h.iovs[i]
		h.hdrs[i].hdr.SetIovlen(1)
		h.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&h.names[i]))
	}
	return h
}

type sys struct {
	rc   syscall.RawConn // a socket in Go's poller, or
	det  *detached       // one taken out of it (detach_linux.go)
	err  error           // the socket could not be used raw: every call fails with it
	v6   bool            // an AF_INET6 socket (IPv4 peers are v4-mapped)
	r, w half
	// The functions rc.Read and rc.Write call, made once (a closure made
	// per call escapes to the heap), with their arguments and results.
	recv, send     func(fd uintptr) bool
	tryRecv        func(fd uintptr) bool // recv that never waits
	waitRecv       func(fd uintptr) bool // recv on det, called by its epoll instance's Read
	pollRecv       func(fd uintptr) bool // recv counted in rtries, for rc.Read
	rtries         int                   // recv attempts in this waiting read: 1 if it did not wait
	waits          uint64                // waiting reads that found the socket empty (Waits)
	rwant, rgot    int
	wwant, wgot    int
	rerrno, werrno syscall.Errno
	rclosed        bool // waitRecv found det closed
	// WriteTo's one-datagram sends, from any goroutine.
	omu     sync.Mutex
	one     half
	ogot    int
	oerrno  syscall.Errno
	sendOne func(fd uintptr) bool
}

func (s *sys) init(c *net.UDPConn, batch int) {
	rc, err := c.SyscallConn()
	if err != nil {
		s.err = fmt.Errorf("udpbatch: %w", err)
		return
	}
	s.rc = rc
	s.setup(batch)
}

func (s *sys) initDetached(d *detached, batch int) {
	s.det = d
	s.setup(batch)
}

// setup makes the buffers and calls and learns the socket's family.
func (s *sys) setup(batch int) {
	s.r, s.w, s.one = newHalf(batch), newHalf(batch), newHalf(1)
	s.recv = func(fd uintptr) bool {
		s.rgot, s.rerrno = 0, 0
		return mmsg(unix.SYS_RECVMMSG, fd, s.r.hdrs, s.rwant, &s.rgot, &s.rerrno)
	}
	s.pollRecv = func(fd uintptr) bool {
		s.rtries++
		return s.recv(fd)
	}
	s.tryRecv = func(fd uintptr) bool {
		s.recv(fd)
		return true
	}
	s.send = func(fd uintptr) bool {
		s.wgot, s.werrno = 0, 0
		return mmsg(unix.SYS_SENDMMSG, fd, s.w.hdrs, s.wwant, &s.wgot, &s.werrno)
	}
	s.sendOne = func(fd uintptr) bool {
		s.ogot, s.oerrno = 0, 0
		return mmsg(unix.SYS_SENDMMSG, fd, s.one.hdrs, 1, &s.ogot, &s.oerrno)
	}
	if d := s.det; d != nil {
		s.waitRecv = func(uintptr) bool {
			s.rtries++
			done, ok := d.run(s.recv)
			if !ok {
				s.rclosed = true
				return true
			}
			return done
		}
	}
	var sa unix.Sockaddr
	var err error
	cerr := s.control(func(fd uintptr) { sa, err = unix.Getsockname(int(fd)) })
	if err = errors.Join(cerr, err); err != nil {
		s.err = fmt.Errorf("udpbatch: getsockname: %w", err)
		return
	}
	_, s.v6 = sa.(*unix.SockaddrInet6)
}

func (s *sys) control(f func(fd uintptr)) error {
	if s.det == nil {
		return s.rc.Control(f)
	}
	if _, ok := s.det.run(func(fd uintptr) bool { f(fd); return true }); !ok {
		return net.ErrClosed
	}
	return nil
}

// doRead runs recv (wait: until the socket has data) on the socket.
func (s *sys) doRead(wait bool) error {
	if s.det == nil {
		if !wait {
			return s.rc.Read(s.tryRecv)
		}
		s.rtries = 0
		err := s.rc.Read(s.pollRecv)
		s.countWait()
		return err
	}
	if !wait {
		if _, ok := s.det.run(s.recv); !ok {
			return net.ErrClosed
		}
		return nil
	}
	s.det.mu.RLock()
	unwatched := s.det.unwatched
	s.det.mu.RUnlock()
	if unwatched {
		return errUnwatched
	}
	s.rclosed, s.rtries = false, 0
	err := s.det.epRaw.Read(s.waitRecv)
	s.countWait()
	if s.rclosed || err != nil && s.det.isClosed() { // the epoll instance's "use of closed file"
		return net.ErrClosed
	}
	return err
}

// countWait counts a waiting read that tried more than once: the first
// try found the socket empty.
func (s *sys) countWait() {
	if s.rtries > 1 {
		s.waits++
	}
}

// doWrite runs send (or sendOne) on the socket until it took something.
func (s *sys) doWrite(send func(fd uintptr) bool) error {
	if s.det == nil {
		return s.rc.Write(send)
	}
	for {
		done, ok := s.det.run(send)
		if !ok {
			return net.ErrClosed
		}
		if done {
			if s.det.full.Load() {
				s.det.full.Store(false)
			}
			return nil
		}
		if err := s.det.waitWritable(); err != nil {
			return err
		}
	}
}

// Read waits for at least one datagram and reads up to len(ms) (at most
// the batch size) into ms[i].Buf, filling N and Addr.
func (b *Conn) Read(ms []Msg) (int, error) { return b.read(ms, true) }

// Waits is how many of b's Reads found the socket empty and waited for
// input. A reader that sees it unchanged across a Read knows the Read
// returned at once: input kept coming. Only Read's goroutine may call it.
func (b *Conn) Waits() uint64 { return b.sys.waits }

// TryRead is Read without the wait: 0 and no error when nothing is queued.
// It exists on Linux only, for a caller that learns from its own epoll set
// which sockets have data.
func (b *Conn) TryRead(ms []Msg) (int, error) { return b.read(ms, false) }

// Control runs f with the socket's file descriptor (see syscall.RawConn).
func (b *Conn) Control(f func(fd uintptr)) error {
	if b.sys.err != nil {
		return b.sys.err
	}
	if err := b.sys.control(f); err != nil {
		return wrap("control", err)
	}
	return nil
}

// Detach returns a Conn whose socket Go's poller no longer watches (see
// detach_linux.go); c is closed and must not be used again (its
// LocalAddr stays right). Close the Conn to close the socket.
func Detach(c *net.UDPConn, batch int) (*Conn, error) {
	d, err := detach(c)
	if err != nil {
		return nil, err
	}
	b := &Conn{c: c}
	b.sys.initDetached(d, max(batch, 1))
	if b.sys.err != nil {
		_ = d.close() // c stays open, in Go's poller
		return nil, b.sys.err
	}
	_ = c.Close() // the poller forgets the socket; the duplicate keeps it open
	return b, nil
}

// Sibling is another Conn on the same socket with buffers of its own
// (batch datagrams), for a second reader or writer.
func (b *Conn) Sibling(batch int) *Conn {
	if b.sys.det == nil {
		return New(b.c, batch)
	}
	s := &Conn{c: b.c}
	s.sys.initDetached(b.sys.det, max(batch, 1))
	return s
}

// Unwatch closes a detached socket's own epoll instance, for a socket
// another epoll set watches and TryRead reads: its data then no longer
// also wakes Go's poller through that instance, and it holds one
// descriptor less. Read fails after it. It does nothing to a socket in
// Go's poller.
func (b *Conn) Unwatch() error {
	if b.sys.det == nil {
		return nil
	}
	if err := b.sys.det.unwatch(); err != nil {
		return wrap("unwatch", err)
	}
	return nil
}

// Detached reports whether Go's poller does not watch the socket.
func (b *Conn) Detached() bool { return b.sys.det != nil }

// SetReadDeadline bounds Read's waits (os.ErrDeadlineExceeded).
func (b *Conn) SetReadDeadline(t time.Time) error {
	if d := b.sys.det; d != nil {
		d.mu.RLock()
		gone := d.closed || d.unwatched
		d.mu.RUnlock()
		if gone {
			return wrap("set deadline", net.ErrClosed)
		}
		return d.ep.SetReadDeadline(t)
	}
	return b.c.SetReadDeadline(t)
}

// Close closes the socket.
func (b *Conn) Close() error {
	if b.sys.det != nil {
		return b.sys.det.close()
	}
	return b.c.Close()
}

// WriteTo sends one datagram; unlike Write it may be called from any
// goroutine.
func (b *Conn) WriteTo(p []byte, to netip.AddrPort) error {
	s := &b.sys
	if s.err != nil {
		return s.err
	}
	s.omu.Lock()
	defer s.omu.Unlock()
	s.one.iovs[0].Base = unsafe.SliceData(p)
	s.one.iovs[0].SetLen(len(p))
	s.one.hdrs[0].hdr.Namelen = s.putSockaddr(&s.one.names[0], to)
	err := s.doWrite(s.sendOne)
	s.one.iovs[0] = unix.Iovec{}
	if err == nil && s.oerrno != 0 {
		err = s.oerrno
	}
	if err != nil {
		return wrap("write", err)
	}
	return nil
}

func (b *Conn) read(ms []Msg, wait bool) (int, error) {
	s := &b.sys
	if s.err != nil {
		return 0, s.err
	}
	n := min(len(ms), len(s.r.hdrs))
	if n == 0 {
		return 0, nil
	}
	for i := range n {
		s.r.iovs[i].Base = unsafe.SliceData(ms[i].Buf)
		s.r.iovs[i].SetLen(len(ms[i].Buf))
		s.r.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		s.r.hdrs[i].hdr.Flags = 0
	}
	s.rwant = n
	err := s.doRead(wait)
	if err == nil && s.rerrno != 0 {
		err = s.rerrno
	}
	if err != nil {
		return 0, wrap("read", err)
	}
	got := s.rgot
	for i := range got {
		ms[i].N = int(s.r.hdrs[i].n)
		ms[i].Addr = sockaddr(&s.r.names[i], s.r.hdrs[i].hdr.Namelen)
	}
	return got, nil
}

// mmsg makes one recvmmsg or sendmmsg of n headers, again when
// interrupted. It reports false (wait for the socket, then call again) when
// the socket has nothing to read or no room.
//
// The call is a RawSyscall6: it does not tell Go's scheduler that a system
// call began. The socket is non-blocking, so the call returns at once and
// there is nothing to hand off; but entering a system call while every P is
// idle wakes sysmon from its deep sleep and resets it to polling every 20 µs
// for a millisecond and more. Under turnd's bursty uclient flood that one
// thread made 8,985 context switches in 40,000 echoes and took about a
// quarter of the process's CPU; with raw calls, 823.
func mmsg(trap, fd uintptr, hdrs []mmsghdr, n int, got *int, errno *syscall.Errno) bool {
	for {
		r, _, e := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(n), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case 0:
			*got = int(r)
		default:
			*errno = e
		}
		return true
	}
}

// Write sends ms (at most the batch size per call) and returns how many the
// kernel took. An error is about ms[n], the first one not sent: the caller
// may skip it and write the rest.
func (b *Conn) Write(ms []Msg) (int, error) {
	s := &b.sys
	if s.err != nil {
		return 0, s.err
	}
	n := min(len(ms), len(s.w.hdrs))
	if n == 0 {
		return 0, nil
	}
	for i := range n {
		s.w.iovs[i].Base = unsafe.SliceData(ms[i].Buf)
		s.w.iovs[i].SetLen(len(ms[i].Buf))
		s.w.hdrs[i].hdr.Namelen = s.putSockaddr(&s.w.names[i], ms[i].Addr)
	}
	s.wwant = n
	err := s.doWrite(s.send)
	clear(s.w.iovs[:n])
	if err == nil && s.werrno != 0 {
		err = s.werrno
	}
	if err != nil {
		return 0, wrap("write", err)
	}
	return s.wgot, nil
}

func wrap(op string, err error) error {
	if errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("udpbatch: %s: %w", op, net.ErrClosed)
	}
	return fmt.Errorf("udpbatch: %s: %w", op, err)
}

// sockaddr decodes what recvmmsg wrote into sa.
func sockaddr(sa *unix.RawSockaddrInet6, n uint32) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch {
	case sa.Family == unix.AF_INET && n >= unix.SizeofSockaddrInet4:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case sa.Family == unix.AF_INET6 && n >= unix.SizeofSockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// putSockaddr encodes ap for this socket's family and returns its length.
func (s *sys) putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort) uint32 {
	a := ap.Addr()
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))[:]
	if !s.v6 {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4()}
		binary.BigEndian.PutUint16(port, ap.Port())
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	if z := a.Zone(); z != "" {
		if id, err := strconv.ParseUint(z, 10, 32); err == nil {
			sa.Scope_id = uint32(id)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			sa.Scope_id = uint32(ifi.Index)
		}
	}
	binary.BigEndian.PutUint16(port, ap.Port())
	return unix.SizeofSockaddrInet6
}
