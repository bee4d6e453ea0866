package relay

import (
	"io"
	"testing"
)

// BenchmarkRelayThroughput is the throughput of one relayed stream between
// two clients of turnd on loopback (MB/s), per transport to the server.
func BenchmarkRelayThroughput(b *testing.B) {
	d := startTurnd(b)
	for _, transport := range []string{UDP, TCP} {
		b.Run(transport, func(b *testing.B) {
			cfg := Config{Servers: []Server{d.server(transport)}}
			x, _ := newClient(b, cfg)
			y, _ := newClient(b, cfg)
			w, r := pair(b, x, y)
			chunk := make([]byte, 64<<10)
			done := make(chan error, 1)
			go func() {
				n, err := io.CopyN(io.Discard, r, int64(b.N)*int64(len(chunk)))
				if err == nil && n != int64(b.N)*int64(len(chunk)) {
					err = io.ErrUnexpectedEOF
				}
				done <- err
			}()
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				if _, err := w.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
