package testenv

import (
	"net"
	"testing"
)

// TCPPair returns both ends of a real TCP connection on network ("tcp",
// "tcp4" or "tcp6") and the loopback addr, both closed when the test ends.
// It skips the test when a tcp6 listener cannot be had (no IPv6 loopback).
//
// The accepted end is checked to be the dialed one's peer: another process
// that dials a port it found free earlier can reach the listener first,
// and a test would then talk to a stranger.
func TCPPair(t testing.TB, network, addr string) (dialed, accepted net.Conn) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		if network == "tcp6" {
			t.Skipf("testenv: no %s loopback: %v", network, err)
		}
		t.Fatalf("testenv: listen: %v", err)
	}
	defer ln.Close()
	dialed, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatalf("testenv: dial: %v", err)
	}
	t.Cleanup(func() { _ = dialed.Close() })
	for {
		c, err := ln.Accept()
		if err != nil {
			t.Fatalf("testenv: accept: %v", err)
		}
		if c.RemoteAddr().String() == dialed.LocalAddr().String() {
			t.Cleanup(func() { _ = c.Close() })
			return dialed, c
		}
		_ = c.Close()
	}
}
