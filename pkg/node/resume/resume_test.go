package resume

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	return testenv.TCPPair(t, "tcp", "127.0.0.1:0")
}

// freezer forwards a TCP connection through loopback sockets until frozen:
// then it stops moving bytes without closing anything, like a cut link.
type freezer struct {
	frozen atomic.Bool
	conns  []net.Conn
}

// pair returns ends a and b joined through the freezer.
func (f *freezer) pair(t *testing.T) (net.Conn, net.Conn) {
	a, x := tcpPair(t)
	y, b := tcpPair(t)
	f.conns = append(f.conns, x, y)
	cp := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if err != nil {
				return
			}
			for f.frozen.Load() {
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
	go cp(y, x)
	go cp(x, y)
	t.Cleanup(func() {
		for _, c := range f.conns {
			c.Close()
		}
	})
	return a, b
}

type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) add(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) has(typ, path string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Type == typ && e.Path == path {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// 10 MiB stream from a to b over a first path; a second, preferred path is
// attached mid-stream, then one path is cut, and everything arrives once,
// in order.
func TestMoveAndCut(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  string // which path dies: "second" or "first"
		how  string // "close" (the socket closes on one side) or "freeze" (silence)
	}{
		{"second path closed", "second", "close"},
		{"second path goes silent", "second", "freeze"},
		{"first path closed after the move", "first", "close"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Window: 256 << 10, Heartbeat: 100 * time.Millisecond, IdleTimeout: 3 * time.Second} // long enough for a loaded CI machine
			var ra, rb recorder
			oa, ob := o, o
			oa.OnEvent, ob.OnEvent = ra.add, rb.add
			var f1, f2 freezer
			a1, b1 := f1.pair(t)
			a := New(a1, "relay", 0, oa)
			b := New(b1, "relay", 0, ob)
			// On a failure the streams close under the reader and writer:
			// they end without reporting it, and the test returns only
			// after they have (defers run last-registered first).
			var loops sync.WaitGroup
			var ended atomic.Bool
			defer loops.Wait()
			defer b.Close()
			defer a.Close()
			defer ended.Store(true)

			const total = 10 << 20
			want := make([]byte, total)
			if _, err := rand.Read(want); err != nil {
				t.Fatal(err)
			}
			var got atomic.Int64
			sum := make(chan [32]byte, 1)
			// The writer stops halfway until the move has been seen, so
			// the second path always has more than the MiB to carry that
			// the test waits for: unpaced, the stream can end within a
			// few tens of milliseconds after the first MiB, before a
			// slow move.
			const half = total / 2
			moved := make(chan struct{})
			loops.Add(2)
			go func() {
				defer loops.Done()
				h := sha256.New()
				buf := make([]byte, 50000)
				for got.Load() < total {
					n, err := b.Read(buf)
					if err != nil {
						if !ended.Load() {
							t.Errorf("read after %d bytes: %v", got.Load(), err)
						}
						break
					}
					h.Write(buf[:n])
					got.Add(int64(n))
				}
				var s [32]byte
				copy(s[:], h.Sum(nil))
				sum <- s
			}()
			go func() {
				defer loops.Done()
				for off := 0; off < total; off += 7777 {
					if off >= half && off-7777 < half {
						select {
						case <-moved:
						case <-a.Done():
							return
						}
					}
					if _, err := a.Write(want[off:min(off+7777, total)]); err != nil {
						if !ended.Load() {
							t.Errorf("write at %d: %v", off, err)
						}
						return
					}
				}
			}()
			waitFor(t, "1 MiB over the first path", func() bool { return got.Load() > 1<<20 })
			a2, b2 := f2.pair(t)
			if err := a.Attach(a2, "punch", 1); err != nil {
				t.Fatal(err)
			}
			if err := b.Attach(b2, "punch", 1); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the move to the second path", func() bool { return a.Active() == "punch" && b.Active() == "punch" })
			mark := got.Load()
			close(moved)
			waitFor(t, "1 MiB over the second path", func() bool { return got.Load() > mark+1<<20 })
			f, end := &f2, a2
			if tc.cut == "first" {
				f, end = &f1, a1
			}
			if tc.how == "freeze" {
				f.frozen.Store(true)
			} else {
				end.Close()
			}
			want1 := "relay"
			if tc.cut == "first" {
				want1 = "punch"
			} else {
				waitFor(t, "the fall back to the first path", func() bool { return a.Active() == "relay" && b.Active() == "relay" })
			}
			var s [32]byte
			select {
			case s = <-sum:
			case <-time.After(30 * time.Second):
				t.Fatalf("the stream did not end: %d of %d bytes", got.Load(), total)
			}
			if got.Load() != total || s != sha256.Sum256(want) {
				t.Fatalf("got %d bytes, hash match %v", got.Load(), s == sha256.Sum256(want))
			}
			if a.Active() != want1 {
				t.Errorf("a sends over %q, want %q", a.Active(), want1)
			}
			cutLabel := map[string]string{"first": "relay", "second": "punch"}[tc.cut]
			if !ra.has(EventDown, cutLabel) && !rb.has(EventDown, cutLabel) {
				t.Errorf("no down event for the cut path: %+v", ra.events)
			}
		})
	}
}

// Close after writing: the peer reads everything, then io.EOF; control
// messages arrive; a stream whose last path dies fails.
func TestCloseControlAndLastPath(t *testing.T) {
	a1, b1 := tcpPair(t)
	got := make(chan []byte, 1)
	a := New(a1, "one", 0, Options{})
	b := New(b1, "one", 0, Options{OnControl: func(m []byte) { got <- m }})
	if err := a.SendControl([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m := <-got; string(m) != "hello" {
		t.Fatalf("control %q", m)
	}
	msg := bytes.Repeat([]byte("x"), 100000)
	if _, err := a.Write(msg); err != nil {
		t.Fatal(err)
	}
	done := make(chan []byte)
	go func() {
		all, err := io.ReadAll(b)
		if err != nil {
			t.Errorf("read to the end: %v", err)
		}
		done <- all
	}()
	if err := a.Close(); err != nil {
		t.Errorf("close once the peer read everything: %v", err)
	}
	if all := <-done; !bytes.Equal(all, msg) {
		t.Fatalf("read %d bytes, want %d", len(all), len(msg))
	}
	b.Close()

	c1, d1 := tcpPair(t)
	c := New(c1, "one", 0, Options{})
	d := New(d1, "one", 0, Options{})
	defer c.Close()
	defer d.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	c1.Close() // the only path dies under both
	if _, err := d.Read(make([]byte, 10)); !errors.Is(err, ErrPathsGone) {
		t.Fatalf("read on a stream without paths: %v, want ErrPathsGone", err)
	}
	<-c.Done()
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write on a failed stream succeeded")
	}
}

// Frames round-trip; bad ones are errors, never panics.
func FuzzReadFrame(f *testing.F) {
	for _, fr := range []frame{
		{typ: frameData, off: 7, payload: []byte("abc")},
		{typ: frameAck, off: 1 << 40},
		{typ: frameAttach},
		{typ: framePing},
		{typ: frameControl, payload: []byte("prepare x")},
		{typ: frameFin, off: 3},
	} {
		f.Add(appendFrame(nil, fr))
	}
	f.Add([]byte{9, 0, 0, 0, 0})
	f.Add([]byte{1, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, _, err := readFrame(bytes.NewReader(b), nil)
		if err != nil {
			return
		}
		again, _, err := readFrame(bytes.NewReader(appendFrame(nil, fr)), nil)
		if err != nil {
			t.Fatalf("re-encoded frame does not parse: %v", err)
		}
		if again.typ != fr.typ || again.off != fr.off || !bytes.Equal(again.payload, fr.payload) {
			t.Fatalf("round trip changed the frame: %+v vs %+v", again, fr)
		}
	})
}

// A peer that closes the first path without running this layer (a pipe
// that lost its connect race) ends the stream cleanly: nothing was carried.
// Anything else that ends the first path before its attach exchange (bad
// input, silence, or bytes of ours that never left) fails the stream.
func TestUnattachedEnd(t *testing.T) {
	tests := []struct {
		name  string
		write bool             // we wrote before the path went
		peer  func(c net.Conn) // what the peer does instead of attaching
		clean bool             // the stream reads io.EOF
	}{
		{name: "close", peer: func(c net.Conn) { c.Close() }, clean: true},
		{name: "reset", peer: func(c net.Conn) {
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}, clean: true},
		{name: "garbage", peer: func(c net.Conn) {
			_, _ = c.Write([]byte{0xee, 0, 0, 0, 1, 0})
		}},
		{name: "cut mid-frame", peer: func(c net.Conn) {
			_, _ = c.Write([]byte{frameAttach, 0, 0})
			c.Close()
		}},
		{name: "silent", peer: func(net.Conn) {}},
		{name: "close after our write", write: true, peer: func(c net.Conn) { c.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a1, b1 := tcpPair(t)
			defer a1.Close()
			b := New(b1, "relay", 0, Options{Heartbeat: 50 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
			defer b.Close()
			if tt.write {
				if _, err := b.Write([]byte("lost?")); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			tt.peer(a1)
			_, err := b.Read(make([]byte, 10))
			if tt.clean {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("read: %v, want io.EOF", err)
				}
				return
			}
			if err == nil || errors.Is(err, io.EOF) || !errors.Is(err, ErrPathsGone) {
				t.Fatalf("read: %v, want ErrPathsGone and no io.EOF", err)
			}
			if _, werr := b.Write([]byte("x")); !errors.Is(werr, ErrPathsGone) {
				t.Fatalf("write after the failure: %v, want ErrPathsGone", werr)
			}
		})
	}
}

// Close says when what was written was not read: the peer closed without
// reading it, or it did not read it within the linger.
func TestCloseUnread(t *testing.T) {
	for _, peerCloses := range []bool{true, false} {
		t.Run(fmt.Sprintf("peer closes %v", peerCloses), func(t *testing.T) {
			a1, b1 := tcpPair(t)
			a := New(a1, "one", 0, Options{Linger: 200 * time.Millisecond})
			b := New(b1, "one", 0, Options{})
			defer b.Close()
			if _, err := a.Write(make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
			if peerCloses {
				b.Close()
			}
			if err := a.Close(); !errors.Is(err, ErrUnread) {
				t.Fatalf("close: %v, want ErrUnread", err)
			}
		})
	}
}

// The attach is the first frame on every path, the first and a later one,
// even when the sender is held up for several heartbeats (as on a loaded
// machine): the peer takes anything else first for a protocol error and
// drops the path.
func TestAttachIsFirstFrame(t *testing.T) {
	const hb = 10 * time.Millisecond
	for _, later := range []bool{false, true} {
		a1, b1 := tcpPair(t)
		s := New(a1, "one", 0, Options{Heartbeat: hb})
		peer := b1
		if later {
			x, y := tcpPair(t)
			if err := s.Attach(x, "two", 1); err != nil {
				t.Fatal(err)
			}
			peer = y
		}
		s.mu.Lock() // holds up the path's reader, which sends the attach
		time.Sleep(5 * hb)
		s.mu.Unlock()
		_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang guard only
		f, _, err := readFrame(peer, nil)
		if err != nil {
			t.Fatalf("later path %v: read the first frame: %v", later, err)
		}
		if f.typ != frameAttach {
			t.Errorf("later path %v: the first frame is of type %d, want the attach (%d)", later, f.typ, frameAttach)
		}
		s.Close()
		b1.Close()
		peer.Close()
	}
}

// A ping ahead of the attach, which older senders could send, is ignored:
// the path attaches and carries the stream.
func TestPingBeforeAttach(t *testing.T) {
	a1, b1 := tcpPair(t)
	b := New(b1, "one", 0, Options{})
	defer b.Close()
	var out []byte
	out = appendFrame(out, frame{typ: framePing})
	out = appendFrame(out, frame{typ: frameAttach})
	out = appendFrame(out, frame{typ: frameData, payload: []byte("hello")})
	if _, err := a1.Write(out); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang guard only
	got := make([]byte, 5)
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v; want hello", got, err)
	}
}

// Paths come and go five times under a 10 MiB stream, some cut while
// data is in flight on them, some closed at the other end: the bytes
// arrive once and in order.
func TestFlappingPaths(t *testing.T) {
	o := Options{Window: 128 << 10, Heartbeat: 100 * time.Millisecond, IdleTimeout: 3 * time.Second} // long enough for a loaded CI machine
	a1, b1 := tcpPair(t)
	a := New(a1, "relay", 0, o)
	b := New(b1, "relay", 0, o)
	defer a.Close()
	defer b.Close()
	const total = 10 << 20
	want := make([]byte, total)
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	sum := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		buf := make([]byte, 30000)
		for got.Load() < total {
			n, err := b.Read(buf)
			if err != nil {
				t.Errorf("read after %d bytes: %v", got.Load(), err)
				break
			}
			h.Write(buf[:n])
			got.Add(int64(n))
		}
		var s [32]byte
		copy(s[:], h.Sum(nil))
		sum <- s
	}()
	// The writer stops after each of the first five MiB until that flap's
	// new path carries data, so every flap happens mid-stream.
	const piece = 1 << 20
	var gates [5]chan struct{}
	for i := range gates {
		gates[i] = make(chan struct{})
	}
	go func() {
		for k := range total / piece {
			if _, err := a.Write(want[k*piece : (k+1)*piece]); err != nil {
				t.Errorf("write: %v", err)
				return
			}
			if k < len(gates) {
				<-gates[k]
			}
		}
	}()
	for i := range 5 {
		x, y := tcpPair(t)
		label := fmt.Sprintf("direct%d", i)
		if err := a.Attach(x, label, 1); err != nil {
			t.Fatal(err)
		}
		if err := b.Attach(y, label, 1); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the move to "+label, func() bool { return a.Active() == label })
		close(gates[i])
		waitFor(t, "progress on "+label, func() bool { return got.Load() > int64(i+1)*piece+128<<10 })
		if i%2 == 0 {
			x.Close()
		} else {
			y.Close()
		}
	}
	s := <-sum
	if got.Load() != total || s != sha256.Sum256(want) {
		t.Fatalf("got %d of %d bytes, hash match %v", got.Load(), total, s == sha256.Sum256(want))
	}
}

// Write blocks once the window is full and the peer does not read: its
// deadline ends it with a timeout, having taken at most the window.
func TestWindowBackpressure(t *testing.T) {
	a1, b1 := tcpPair(t)
	a := New(a1, "one", 0, Options{Window: 64 << 10})
	b := New(b1, "one", 0, Options{Window: 64 << 10})
	defer a.Close()
	defer b.Close()
	_ = a.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := a.Write(make([]byte, 1<<20))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write into a full window: %v, want a timeout", err)
	}
	if n > 64<<10 {
		t.Fatalf("wrote %d bytes into a window of %d", n, 64<<10)
	}
}
