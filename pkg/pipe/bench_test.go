package pipe

import (
	"context"
	"testing"
	"time"
)

// BenchmarkPipeFrames sends 1 KiB framed messages over loopback TCP and
// receives them from a queue.
func BenchmarkPipeFrames(b *testing.B) {
	c, s := tcpPair(b, "tcp4", "127.0.0.1:0")
	a, r := New(c, Options{}), New(s, Options{QueueSize: 1 << 20})
	defer a.Close()
	defer r.Close()
	if err := r.Subscribe(Sub{}); err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 1024)
	ctx := context.Background()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
		if _, err := r.Recv(ctx, Sub{}, 10*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}
