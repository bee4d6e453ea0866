package turnserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

func udpPair(t testing.TB) (*net.UDPConn, *net.UDPConn) {
	t.Helper()
	var cs [2]*net.UDPConn
	for i := range cs {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		cs[i] = c
	}
	return cs[0], cs[1]
}

func TestBatchConnKeepsOrderAndAddresses(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		batch int
	}{
		{"less than a batch", 5, 16},
		{"several full batches", 50, 16},
		{"batch of one", 3, 1},
	}
	for _, tt := range tests {
		for _, detached := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/detached=%v", tt.name, detached), func(t *testing.T) {
				a, peer := udpPair(t)
				bc := newBatchConn(a, newBatchGroup(), tt.batch, detached)
				for i := range tt.n {
					msg := fmt.Appendf(nil, "datagram %d", i)
					if n, err := bc.WriteTo(msg, peer.LocalAddr()); err != nil || n != len(msg) {
						t.Fatalf("write %d: %d, %v", i, n, err)
					}
				}
				// The reader going idle (a read with nothing buffered) sends the
				// queue; the peer echoes everything back.
				go func() {
					buf := make([]byte, 2048)
					for range tt.n {
						_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
						n, from, err := peer.ReadFrom(buf)
						if err != nil {
							return
						}
						_, _ = peer.WriteTo(buf[:n], from)
					}
				}()
				_ = bc.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 2048)
				for i := range tt.n {
					n, from, err := bc.ReadFrom(buf)
					if err != nil {
						t.Fatalf("read %d: %v", i, err)
					}
					if want := fmt.Appendf(nil, "datagram %d", i); !bytes.Equal(buf[:n], want) {
						t.Fatalf("read %q, want %q", buf[:n], want)
					}
					if from.String() != peer.LocalAddr().String() {
						t.Fatalf("from %v, want %v", from, peer.LocalAddr())
					}
				}
			})
		}
	}
}

// A write from a goroutine that never reads still goes out (the timer).
func TestBatchConnFlushesWithoutReader(t *testing.T) {
	for _, detached := range []bool{false, true} {
		t.Run(fmt.Sprintf("detached=%v", detached), func(t *testing.T) {
			a, peer := udpPair(t)
			bc := newBatchConn(a, newBatchGroup(), 16, detached)
			if _, err := bc.WriteTo([]byte("lonely"), peer.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, _, err := peer.ReadFrom(buf)
			if err != nil || string(buf[:n]) != "lonely" {
				t.Fatalf("peer got %q, %v", buf[:n], err)
			}
		})
	}
}

// A datagram larger than the queue's buffers goes out whole, after what
// was queued before it.
func TestBatchConnLargeDatagramInOrder(t *testing.T) {
	for _, detached := range []bool{false, true} {
		t.Run(fmt.Sprintf("detached=%v", detached), func(t *testing.T) {
			a, peer := udpPair(t)
			bc := newBatchConn(a, newBatchGroup(), 16, detached)
			big := bytes.Repeat([]byte{7}, batchMTU+500)
			for _, m := range [][]byte{[]byte("small"), big} {
				if _, err := bc.WriteTo(m, peer.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			buf := make([]byte, 4096)
			for _, want := range []int{5, len(big)} {
				_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, _, err := peer.ReadFrom(buf)
				if err != nil || n != want {
					t.Fatalf("peer got %d bytes (%v), want %d", n, err, want)
				}
			}
		})
	}
}

func TestBatchConnClosed(t *testing.T) {
	for _, detached := range []bool{false, true} {
		t.Run(fmt.Sprintf("detached=%v", detached), func(t *testing.T) {
			a, peer := udpPair(t)
			bc := newBatchConn(a, newBatchGroup(), 16, detached)
			done := make(chan error, 1)
			go func() {
				_, _, err := bc.ReadFrom(make([]byte, 64))
				done <- err
			}()
			time.Sleep(50 * time.Millisecond)
			if err := bc.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("read after close: %v, want net.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("ReadFrom did not return after Close")
			}
			if _, err := bc.WriteTo([]byte("x"), peer.LocalAddr()); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("write after close: %v, want net.ErrClosed", err)
			}
		})
	}
}

// BenchmarkBatchConnWrite compares writing 100-byte datagrams one system
// call each with queueing them for sendmmsg (the lever behind batchConn).
func BenchmarkBatchConnWrite(b *testing.B) {
	for _, bt := range []struct {
		name  string
		wrap  func(*net.UDPConn) net.PacketConn
		flush func(net.PacketConn)
	}{
		{"plain", func(c *net.UDPConn) net.PacketConn { return c }, func(net.PacketConn) {}},
		{"batched", func(c *net.UDPConn) net.PacketConn { return newBatchConn(c, newBatchGroup(), listenBatch, true) },
			func(c net.PacketConn) { c.(*batchConn).flush() }},
	} {
		b.Run(bt.name, func(b *testing.B) {
			a, sink := udpPair(b)
			_ = sink.SetReadBuffer(4 << 20)
			go func() { // drain so the sink's queue never fills
				buf := make([]byte, 2048)
				for {
					if _, _, err := sink.ReadFrom(buf); err != nil {
						return
					}
				}
			}()
			c := bt.wrap(a)
			msg := make([]byte, 100)
			to := sink.LocalAddr()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := c.WriteTo(msg, to); err != nil {
					b.Fatal(err)
				}
			}
			bt.flush(c)
		})
	}
}
