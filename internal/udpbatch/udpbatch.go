// Package udpbatch reads and writes batches of UDP datagrams (recvmmsg and
// sendmmsg on Linux) without allocating: buffers and addresses live in the
// caller's Msg slice and in the Conn, so a server that answers every
// datagram leaves the garbage collector nothing to do. Elsewhere a Conn
// reads and writes one datagram per system call behind the same interface.
//
// golang.org/x/net's ipv4.PacketConn batches too, but it allocates a
// net.UDPAddr for every datagram read; at 100,000 requests/s that alone
// starts a garbage collection several times a second, and a request that
// arrives during one waits for it (the servers' p99 latency).
package udpbatch

import (
	"net"
	"net/netip"
)

// Msg is one datagram. Read fills N and Addr and leaves Buf as it is;
// Write sends Buf to Addr.
type Msg struct {
	Buf  []byte
	N    int
	Addr netip.AddrPort
}

// Conn batches the I/O of one UDP socket. Read and Write may run
// concurrently with each other, but each of them from one goroutine at a
// time.
type Conn struct {
	c *net.UDPConn
	sys
}

// New returns a Conn moving at most batch datagrams per system call.
func New(c *net.UDPConn, batch int) *Conn {
	b := &Conn{c: c}
	b.sys.init(c, max(batch, 1))
	return b
}

// LocalAddr is the socket's address.
func (b *Conn) LocalAddr() net.Addr { return b.c.LocalAddr() }
