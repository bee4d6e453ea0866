package udpbatch

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func detachedConn(t *testing.T, batch int) *Conn {
	t.Helper()
	b, err := Detach(listen(t, "udp4", "127.0.0.1:0"), batch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func bufs(n int) []Msg {
	ms := make([]Msg, n)
	for i := range ms {
		ms[i].Buf = make([]byte, 64)
	}
	return ms
}

// TestDetachedRoundTrip: a detached socket reads what a plain one sends
// (waiting for it), answers with Write and WriteTo, and a sibling reads it
// too; TryRead finds nothing when nothing is queued.
func TestDetachedRoundTrip(t *testing.T) {
	d := detachedConn(t, 8)
	peer := New(listen(t, "udp4", "127.0.0.1:0"), 8)
	in := bufs(8)
	if n, err := d.TryRead(in); n != 0 || err != nil {
		t.Fatalf("TryRead on an empty socket: %d, %v", n, err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond) // Read must wait for it
		_ = peer.WriteTo([]byte("ping"), local(d))
	}()
	n, err := d.Read(in)
	if err != nil || n != 1 || string(in[0].Buf[:in[0].N]) != "ping" || in[0].Addr != local(peer) {
		t.Fatalf("Read = %d, %v (%+v)", n, err, in[:n])
	}
	if _, err := d.Write([]Msg{{Buf: []byte("pong"), Addr: local(peer)}}); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteTo([]byte("pong2"), local(peer)); err != nil {
		t.Fatal(err)
	}
	got := bufs(2)
	for read := 0; read < 2; {
		n, err := peer.Read(got[read:])
		if err != nil {
			t.Fatal(err)
		}
		read += n
	}
	if string(got[0].Buf[:got[0].N]) != "pong" || string(got[1].Buf[:got[1].N]) != "pong2" || got[0].Addr != local(d) {
		t.Fatalf("answers %+v", got)
	}
	sib := d.Sibling(4)
	_ = peer.WriteTo([]byte("to the sibling"), local(d))
	n, err = sib.Read(in)
	if err != nil || n != 1 || string(in[0].Buf[:in[0].N]) != "to the sibling" {
		t.Fatalf("sibling Read = %d, %v", n, err)
	}
}

// TestDetachedClose: Close wakes a Read waiting on the socket with
// net.ErrClosed, and every call after it says the same; a read deadline
// ends a wait with os.ErrDeadlineExceeded.
func TestDetachedClose(t *testing.T) {
	d := detachedConn(t, 4)
	if err := d.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(bufs(1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	_ = d.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := d.Read(bufs(1))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("waiting Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second): // a hang, not a slow wake-up
		t.Fatal("Close did not wake the waiting Read")
	}
	for name, err := range map[string]error{
		"TryRead":         func() error { _, err := d.TryRead(bufs(1)); return err }(),
		"Write":           func() error { _, err := d.Write([]Msg{{Buf: []byte("x"), Addr: local(d)}}); return err }(),
		"WriteTo":         d.WriteTo([]byte("x"), local(d)),
		"SetReadDeadline": d.SetReadDeadline(time.Now()),
		"Close":           d.Close(),
	} {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: %v, want net.ErrClosed", name, err)
		}
	}
}

// TestDetachedNotInGoPoller: after Detach, no epoll instance of the
// process but the socket's own watches the socket, and that one watches
// it for input only (the kernel's fdinfo lists what each instance holds).
func TestDetachedNotInGoPoller(t *testing.T) {
	d := detachedConn(t, 4)
	var sock int
	_ = d.Control(func(fd uintptr) { sock = int(fd) })
	own := int(d.sys.det.ep.Fd())
	w := watchers(t, sock)
	if len(w) != 1 {
		t.Fatalf("the socket is in %d epoll instances (%v), want 1", len(w), w)
	}
	if ev, ok := w[own]; !ok {
		t.Errorf("epoll instances %v watch the socket, not its own (%d)", w, own)
	} else if ev&unix.EPOLLOUT != 0 || ev&unix.EPOLLIN == 0 {
		t.Errorf("the socket's own epoll instance watches events %#x, want EPOLLIN and no EPOLLOUT", ev)
	}
	if err := d.Unwatch(); err != nil {
		t.Fatal(err)
	}
	if w := watchers(t, sock); len(w) != 0 {
		t.Errorf("after Unwatch epoll instances %v still watch the socket", w)
	}
}

// watchers are the epoll instances of the process that hold fd, with the
// events each watches.
func watchers(t *testing.T, fd int) map[int]uint64 {
	t.Helper()
	ino := inode(t, fd)
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	out := map[int]uint64{}
	for _, e := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			// tfd: N events: HEX data: HEX pos:0 ino:HEX sdev:N
			f := strings.Fields(line)
			if len(f) < 8 || f[0] != "tfd:" || f[7] != "ino:"+ino {
				continue
			}
			ep, _ := strconv.Atoi(e.Name())
			out[ep], _ = strconv.ParseUint(f[3], 16, 32)
		}
	}
	return out
}

// inode is the socket inode of fd as fdinfo prints it (hex).
func inode(t *testing.T, fd int) string {
	t.Helper()
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		t.Skip(err)
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
	if err != nil {
		t.Skipf("fd %d is %s", fd, link)
	}
	return strconv.FormatUint(n, 16)
}

// TestDetachedConcurrentWriteTo: WriteTo from several goroutines at once
// delivers every datagram intact.
func TestDetachedConcurrentWriteTo(t *testing.T) {
	d := detachedConn(t, 4)
	rx := detachedConn(t, 32)
	const senders, each = 4, 50
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := d.WriteTo([]byte(fmt.Sprintf("%d-%d", g, i)), local(rx)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	in := bufs(32)
	for len(seen) < senders*each {
		_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := rx.Read(in)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(seen), err)
		}
		for _, m := range in[:n] {
			seen[string(m.Buf[:m.N])] = true
		}
	}
}

// TestDetachedUnwatch: after Unwatch TryRead still reads, Read says it cannot
// wait, writes work, and Close closes the socket.
func TestDetachedUnwatch(t *testing.T) {
	d := detachedConn(t, 4)
	peer := detachedConn(t, 4)
	if err := d.Unwatch(); err != nil {
		t.Fatal(err)
	}
	if err := peer.WriteTo([]byte("still here"), local(d)); err != nil {
		t.Fatal(err)
	}
	in := bufs(2)
	if n, err := d.TryRead(in); err != nil || n != 1 || string(in[0].Buf[:in[0].N]) != "still here" {
		t.Fatalf("TryRead after Unwatch = %d, %v", n, err)
	}
	if _, err := d.Read(in); err == nil {
		t.Fatal("Read after Unwatch waited or read; want an error")
	}
	if err := d.WriteTo([]byte("back"), local(peer)); err != nil {
		t.Fatal(err)
	}
	if n, err := peer.Read(in); err != nil || n != 1 || string(in[0].Buf[:in[0].N]) != "back" {
		t.Fatalf("peer Read = %d, %v", n, err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close after Unwatch: %v", err)
	}
	if _, err := d.TryRead(in); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("TryRead after Close: %v", err)
	}
}
