package udpbatch

import (
	"errors"
	"net"
	"testing"
)

// TestTryRead: TryRead returns at once with nothing queued, then reads
// what was sent, and reports a closed socket.
func TestTryRead(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	b := New(c, 4)
	in := make([]Msg, 4)
	for i := range in {
		in[i].Buf = make([]byte, 64)
	}
	if n, err := b.TryRead(in); n != 0 || err != nil {
		t.Fatalf("empty socket: %d, %v; want 0, nil", n, err)
	}
	tx := listen(t, "udp4", "127.0.0.1:0")
	for _, s := range []string{"one", "two"} {
		if _, err := tx.WriteToUDPAddrPort([]byte(s), addrPort(c)); err != nil {
			t.Fatal(err)
		}
	}
	// Loopback delivers into the receive queue within the send call.
	n, err := b.TryRead(in)
	if err != nil || n != 2 || string(in[0].Buf[:in[0].N]) != "one" || string(in[1].Buf[:in[1].N]) != "two" || in[1].Addr != addrPort(tx) {
		t.Fatalf("TryRead = %d, %v (%+v)", n, err, in[:n])
	}
	c.Close()
	if _, err := b.TryRead(in); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("closed socket: %v, want net.ErrClosed", err)
	}
}
