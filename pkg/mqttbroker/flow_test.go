package mqttbroker

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

// sink is a net.Conn that records what is written to it.
type sink struct {
	net.Conn
	out lockedBuf
}

func (s *sink) Write(p []byte) (int, error)      { return s.out.Write(p) }
func (s *sink) Close() error                     { return nil }
func (s *sink) SetDeadline(time.Time) error      { return nil }
func (s *sink) SetWriteDeadline(time.Time) error { return nil }

// FuzzFlowConnWrite writes arbitrary bytes, in two chunks, as mochi's
// encoded output. It must never panic; with a window no publish fills, what
// reaches the wire is exactly the complete packets written, in order; with a
// window of one, acknowledging every id sends everything queued.
func FuzzFlowConnWrite(f *testing.F) {
	f.Add([]byte{0x32, 0x07, 0x00, 0x01, 't', 0x00, 0x05, 'h', 'i', 0xd0, 0x00}, uint8(4))
	f.Add([]byte{0x30, 0x03, 0x00, 0x01, 'a', 0x32, 0x05, 0x00, 0x01, 'b', 0x00, 0x01}, uint8(0))
	f.Add([]byte{0x34, 0xff, 0xff, 0xff, 0xff, 0x7f}, uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		split := min(int(cut), len(in))
		for _, window := range []int{1 << 16, 1} {
			s := &sink{}
			lim := &flowLimits{window: window, maxQueued: 1 << 16, maxBytes: 1 << 30}
			fc := newFlowConn(s, lim)
			_, err1 := fc.Write(in[:split])
			_, err2 := fc.Write(in[split:])
			if err1 != nil || err2 != nil {
				continue // malformed stream: refused, nothing more to check
			}
			if window == 1 {
				for id := range 1 << 16 {
					fc.acked(uint16(id))
				}
			}
			fc.waitFlushed()
			fc.mu.Lock()
			complete := len(in) - len(fc.partial)
			fc.mu.Unlock()
			if fc.queueLen() != 0 && window > 1 {
				t.Fatalf("%d publishes held back with an unused window", fc.queueLen())
			}
			got := []byte(s.out.String())
			if window > 1 && !bytes.Equal(got, in[:complete]) {
				t.Fatalf("wire got %x, want %x", got, in[:complete])
			}
			if len(got) > complete {
				t.Fatalf("wire got %d bytes of %d complete", len(got), complete)
			}
			if lim.queued.Load() != int64(fc.queueLen()) {
				t.Fatalf("queued gauge %d, queue %d", lim.queued.Load(), fc.queueLen())
			}
		}
	})
}

// TestFlowConnSocketWrite writes through a real TCP socket, so the writes
// go out from the caller while the socket takes them and from the writer
// goroutine once its buffer is full: the peer must read every byte, in
// order, whether it reads along or only after everything was written.
func TestFlowConnSocketWrite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stalled bool // the peer reads only after the last Write
		size    int  // payload bytes per QoS 0 PUBLISH
		count   int
	}{
		{"reader keeps up", false, 64, 2000},
		{"reader stalls", true, 1000, 16000}, // more than loopback buffers hold
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, peer := tcpPair(t)
			lim := &flowLimits{window: 16, maxQueued: 1 << 16, maxBytes: 1 << 30}
			fc := newFlowConn(conn, lim)
			if !fc.raw.ok() {
				t.Skip("no non-blocking socket writes on this platform")
			}
			defer fc.Close()

			var want bytes.Buffer
			for i := range tc.count {
				body := append([]byte{0x00, 0x01, 't'}, bytes.Repeat([]byte{byte(i)}, tc.size)...)
				pkt := append([]byte{0x30}, varint(len(body))...)
				want.Write(append(pkt, body...))
			}
			got := make(chan []byte, 1)
			read := func() {
				b := make([]byte, want.Len())
				_, err := io.ReadFull(peer, b)
				if err != nil {
					t.Error(err)
				}
				got <- b
			}
			if !tc.stalled {
				go read()
			}
			// Whole packets, several per Write and split across Writes, as
			// mochi's buffered writes may hand them over.
			all := want.Bytes()
			for i := 0; i < len(all); i += 700 {
				if _, err := fc.Write(all[i:min(i+700, len(all))]); err != nil {
					t.Fatal(err)
				}
			}
			if tc.stalled {
				fc.mu.Lock()
				writing := fc.writing
				fc.mu.Unlock()
				if !writing {
					t.Fatal("the socket took everything unread: the writer goroutine was not needed")
				}
				go read()
			}
			if b := <-got; !bytes.Equal(b, all) {
				t.Fatal("peer read other bytes than were written")
			}
			fc.waitFlushed()
		})
	}
}

// varint is MQTT's remaining-length encoding.
func varint(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// tcpPair is both ends of a loopback TCP connection, closed with the test.
func tcpPair(t *testing.T) (accepted, dialed net.Conn) {
	t.Helper()
	dialed, accepted = testenv.TCPPair(t, "tcp", "127.0.0.1:0")
	return accepted, dialed
}
