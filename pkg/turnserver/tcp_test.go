package turnserver

import (
	"errors"
	"net"
	"testing"
	"time"
)

// closedByServer waits (bounded) for the server to close c.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := c.Read(make([]byte, 64))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestTCPIdleConnectionWithoutAllocationIsClosed(t *testing.T) {
	s, _ := testServer(t, func(c *Config) { c.TCPIdle = 300 * time.Millisecond })
	addr := s.TCPAddrs()[0].String()
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// A connection that allocated keeps its allocation past the idle limit.
	r := newRawClient(t, "tcp", addr, "alice", "alice-pw")
	if code := r.code(r.allocate()); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	if !closedByServer(t, idle) {
		t.Fatal("an idle connection without an allocation was not closed")
	}
	if s.Allocations() != 1 {
		t.Fatalf("allocations = %d, want the TCP client's 1", s.Allocations())
	}
	// Still usable: a Refresh answers.
	if code := r.code(r.request(0x004, rawAttr{0x000D, []byte{0, 0, 2, 88}})); code != 0 {
		t.Fatalf("refresh on the allocated connection: %d", code)
	}
}

func TestMaxTCPConnections(t *testing.T) {
	s, _ := testServer(t, func(c *Config) { c.MaxTCPConns = 1 })
	addr := s.TCPAddrs()[0].String()
	r := newRawClient(t, "tcp", addr, "alice", "alice-pw")
	if code := r.code(r.allocate()); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if !closedByServer(t, extra) {
		t.Fatal("a connection over the limit stayed open")
	}
	if metric(t, s.f.m.tcpRefused) != 1 {
		t.Fatalf("tcp refused = %v, want 1", metric(t, s.f.m.tcpRefused))
	}
	// The first connection still works; after it closes a new one is accepted.
	if code := r.code(r.request(0x004, rawAttr{0x000D, []byte{0, 0, 2, 88}})); code != 0 {
		t.Fatalf("refresh: %d", code)
	}
	_ = r.conn.Close()
	for range 100 {
		if s.conns.len() == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	again := newRawClient(t, "tcp", addr, "alice", "alice-pw")
	if code := again.code(again.allocate()); code != 0 {
		t.Fatalf("allocate after the first connection closed: %d", code)
	}
}
