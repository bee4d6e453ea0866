package mqttbroker

import (
	"bytes"
	"net"
	"testing"
	"time"
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
