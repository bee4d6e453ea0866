package udpbatch

import (
	"testing"
	"time"
)

// TestWaits: a Read that finds datagrams queued leaves Waits alone; one
// that finds the socket empty and waits for input adds one, on plain and
// detached sockets alike.
func TestWaits(t *testing.T) {
	for _, detach := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "detached"}[detach]
		t.Run(name, func(t *testing.T) {
			var b *Conn
			if detach {
				b = detachedConn(t, 8)
			} else {
				b = New(listen(t, "udp4", "127.0.0.1:0"), 8)
			}
			peer := New(listen(t, "udp4", "127.0.0.1:0"), 8)
			in := bufs(8)

			// Loopback queues a datagram inside the send call.
			if err := peer.WriteTo([]byte("queued"), local(b)); err != nil {
				t.Fatal(err)
			}
			if n, err := b.Read(in); n != 1 || err != nil {
				t.Fatalf("Read of a queued datagram = %d, %v", n, err)
			}
			if w := b.Waits(); w != 0 {
				t.Fatalf("Waits after a read that found input = %d, want 0", w)
			}

			// The send comes after the read began, unless this goroutine
			// was held off the CPU for the whole delay: try a few times.
			for try := 1; ; try++ {
				go func() {
					time.Sleep(100 * time.Millisecond)
					_ = peer.WriteTo([]byte("late"), local(b))
				}()
				if n, err := b.Read(in); n != 1 || err != nil || string(in[0].Buf[:in[0].N]) != "late" {
					t.Fatalf("Read = %d, %v", n, err)
				}
				if b.Waits() == 1 {
					break
				}
				if try == 5 {
					t.Fatalf("Waits after %d reads of an empty socket = %d, want 1", try, b.Waits())
				}
			}
		})
	}
}
