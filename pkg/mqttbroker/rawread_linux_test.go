package mqttbroker

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// TestRawRead: a flowConn on a TCP socket reads with raw system calls and
// still reports what net.Conn would: the bytes, a passed deadline, and
// io.EOF when the peer closes.
func TestRawRead(t *testing.T) {
	c, peer := tcpPair(t)
	fc := newFlowConn(c, &flowLimits{window: 1, maxQueued: 1, maxBytes: 1 << 10, maxPending: 1})
	defer fc.Close()
	if !fc.raw.ok() {
		t.Fatal("a TCP socket did not get raw I/O")
	}
	buf := make([]byte, 16)

	_ = fc.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := fc.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	_ = fc.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds a broken test only
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if n, err := fc.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v; want hello", buf[:n], err)
	}
	_ = peer.Close()
	if n, err := fc.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v; want 0, io.EOF", n, err)
	}
}
