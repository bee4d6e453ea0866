package turnserver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pd-go/p2pd/internal/udpbatch"
)

// Batched UDP I/O for pion. pion reads each socket in its own goroutine
// (one per listening socket, one per allocation) and writes one datagram
// per call, so without help every relayed datagram costs two system calls
// and two trips through Go's poller. batchConn keeps pion's one-datagram
// net.PacketConn interface but reads with recvmmsg (ReadFrom serves the
// datagrams of one batch, then reads the next) and writes with sendmmsg
// (WriteTo copies into a queue that goes out when it is full or when any
// reader of the same batchGroup has served its batch and is about to read
// again; a TCP/TLS client connection's reader, whose frames pion relays to
// relay sockets, flushes the group before it reads too). Every write pion
// makes comes from one of those reader goroutines, so a datagram waits at
// most for the rest of the batch it answers; a timer flushes anything else
// within flushAfter.
//
// Reads and writes go through internal/udpbatch, which allocates nothing per
// datagram; pion wants a net.Addr per datagram read, so each batchConn keeps
// the *net.UDPAddr of the senders it has seen (a relay socket has one peer
// or a few, a listening socket one per client; the cache is emptied when it
// reaches addrCacheMax) instead of making one per datagram.

const (
	listenBatch = 32   // datagrams per system call on a listening socket
	relayBatch  = 16   // and on a relay socket (buffers are allocated once traffic comes)
	batchMTU    = 1600 // largest datagram queued; pion reads at most this much too
	flushAfter  = 2 * time.Millisecond

	addrCacheMax = 4096
)

// batchGroup is the set of batchConns whose queued writes a reader flushes
// before it reads again.
type batchGroup struct {
	mu    sync.Mutex
	dirty []*batchConn
	spare []*batchConn // the list flush last worked through, for reuse
	armed atomic.Bool
	timer *time.Timer
	errs  atomic.Uint64 // datagrams a sendmmsg refused
}

func newBatchGroup() *batchGroup {
	g := &batchGroup{}
	g.timer = time.AfterFunc(time.Hour, func() {
		g.armed.Store(false)
		g.flush()
	})
	g.timer.Stop()
	return g
}

// markDirty records that c has queued writes.
func (g *batchGroup) markDirty(c *batchConn) {
	g.mu.Lock()
	g.dirty = append(g.dirty, c)
	g.mu.Unlock()
	if g.armed.CompareAndSwap(false, true) {
		g.timer.Reset(flushAfter)
	}
}

// flush sends every queued write of the group (nil: none).
func (g *batchGroup) flush() {
	if g == nil {
		return
	}
	g.mu.Lock()
	if len(g.dirty) == 0 {
		g.mu.Unlock()
		return
	}
	list := g.dirty
	g.dirty, g.spare = g.spare[:0], nil // the two lists take turns: no allocation per flush
	g.mu.Unlock()
	for i, c := range list {
		c.flush()
		list[i] = nil
	}
	g.mu.Lock()
	if g.spare == nil {
		g.spare = list[:0]
	}
	g.mu.Unlock()
}

// batchConn is a UDP socket read and written in batches; see above. One
// goroutine at a time reads (a mutex makes more safe, not fast); any number
// may write.
//
// Listening sockets, and relay sockets once they carry a channel (detach),
// are outside Go's poller (udpbatch.Detach): in it, every datagram sent
// woke the poller's thread for the socket's output readiness, which
// nothing waits for; under the uclient flood half of the poller's wake-ups
// were those. Relay sockets start in it: taking one out costs system calls
// that an allocation which never carries a channel would pay for nothing
// (allocations/s fell 10 % when every relay socket was detached at once).
type batchConn struct {
	pc    atomic.Pointer[udpbatch.Conn] // replaced by detach, under rmu and wmu
	uc    *net.UDPConn                  // the socket, until detached
	laddr net.Addr
	g     *batchGroup
	batch int

	rmu    sync.Mutex
	rmsgs  []udpbatch.Msg
	rn, ri int // rmsgs[ri:rn] are read and not yet served
	one    []udpbatch.Msg
	addrs  map[netip.AddrPort]*net.UDPAddr

	wmu    sync.Mutex
	wmsgs  []udpbatch.Msg
	wbufs  [][]byte
	wn     int  // queued datagrams
	dirty  bool // c is on g.dirty
	closed bool
}

func newBatchConn(c *net.UDPConn, g *batchGroup, batch int, detached bool) *batchConn {
	bc := &batchConn{uc: c, laddr: c.LocalAddr(), g: g, batch: batch, one: make([]udpbatch.Msg, 1)}
	bc.pc.Store(udpbatch.New(c, batch))
	if detached {
		bc.detach()
	}
	return bc
}

// detach takes the socket out of Go's poller (see above). No read may be
// waiting on it.
func (c *batchConn) detach() {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed || c.uc == nil {
		return
	}
	c.sendLocked()
	pc, err := udpbatch.Detach(c.uc, c.batch)
	if err != nil { // it stays in Go's poller
		return
	}
	c.uc = nil
	c.pc.Store(pc)
}

func (c *batchConn) LocalAddr() net.Addr { return c.laddr }

// SetReadDeadline bounds ReadFrom's wait (os.ErrDeadlineExceeded).
func (c *batchConn) SetReadDeadline(t time.Time) error { return c.pc.Load().SetReadDeadline(t) }

// SetDeadline sets the read deadline: writes do not wait.
func (c *batchConn) SetDeadline(t time.Time) error { return c.pc.Load().SetReadDeadline(t) }

// SetWriteDeadline does nothing: writes do not wait (a full send buffer
// drops, as UDP may).
func (c *batchConn) SetWriteDeadline(time.Time) error { return nil }

// addr is the net.Addr pion gets for ap. Called with rmu held.
func (c *batchConn) addr(ap netip.AddrPort) net.Addr {
	if a, ok := c.addrs[ap]; ok {
		return a
	}
	if c.addrs == nil || len(c.addrs) >= addrCacheMax {
		c.addrs = make(map[netip.AddrPort]*net.UDPAddr)
	}
	a := net.UDPAddrFromAddrPort(ap)
	c.addrs[ap] = a
	return a
}

func (c *batchConn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.ri == c.rn {
		// This batch is served: what it caused goes out before we wait.
		c.g.flush()
		if c.rmsgs == nil {
			// The first datagram is read alone: a socket that never sees
			// traffic (most relay sockets under an allocation load) never
			// gets batch buffers.
			c.one[0].Buf = p
			_, err := c.pc.Load().Read(c.one)
			if err != nil {
				return 0, nil, fmt.Errorf("turnserver: read: %w", err)
			}
			c.rmsgs = make([]udpbatch.Msg, c.batch)
			for i := range c.rmsgs {
				c.rmsgs[i].Buf = make([]byte, batchMTU)
			}
			return c.one[0].N, c.addr(c.one[0].Addr), nil
		}
		n, err := c.pc.Load().Read(c.rmsgs)
		if err != nil {
			return 0, nil, fmt.Errorf("turnserver: read batch: %w", err)
		}
		c.ri, c.rn = 0, n
	}
	m := &c.rmsgs[c.ri]
	c.ri++
	return copy(p, m.Buf[:m.N]), c.addr(m.Addr), nil
}

var errConnClosed = fmt.Errorf("turnserver: write on a closed socket: %w", net.ErrClosed)

func (c *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("turnserver: write to %v: not a UDP address", addr)
	}
	if len(p) > batchMTU {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		c.sendLocked() // keep the order of what this socket sends
		if err := c.pc.Load().WriteTo(p, ua.AddrPort()); err != nil {
			return 0, fmt.Errorf("turnserver: write: %w", err)
		}
		return len(p), nil
	}
	if err := c.queue(nil, p, ua.AddrPort()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeChannelData queues hdr + data + zero padding to four bytes as one
// datagram; false if it is too large to queue (nothing was sent).
func (c *batchConn) writeChannelData(hdr [4]byte, data []byte, addr net.Addr) bool {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || 4+len(data)+3 > batchMTU {
		return false
	}
	_ = c.queue(hdr[:], data, ua.AddrPort()) // closed: as WriteTo's error, dropped
	return true
}

// queue copies head + p (padded to four bytes when head is set) into the
// send queue.
func (c *batchConn) queue(head, p []byte, to netip.AddrPort) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return errConnClosed
	}
	if c.wmsgs == nil {
		c.wmsgs = make([]udpbatch.Msg, c.batch)
		c.wbufs = make([][]byte, c.batch)
		for i := range c.wbufs {
			c.wbufs[i] = make([]byte, batchMTU)
		}
	}
	buf := c.wbufs[c.wn]
	n := copy(buf, head)
	n += copy(buf[n:], p)
	if head != nil {
		for n%4 != 0 {
			buf[n] = 0
			n++
		}
	}
	m := &c.wmsgs[c.wn]
	m.Buf = buf[:n]
	m.Addr = to
	c.wn++
	if c.wn == c.batch {
		c.sendLocked()
	} else if !c.dirty {
		c.dirty = true
		c.g.markDirty(c)
	}
	return nil
}

// flush sends what is queued.
func (c *batchConn) flush() {
	c.wmu.Lock()
	c.sendLocked()
	c.dirty = false
	c.wmu.Unlock()
}

// sendLocked sends the queue with sendmmsg. A datagram the kernel refuses
// is counted and skipped so the rest still go.
func (c *batchConn) sendLocked() {
	ms := c.wmsgs[:c.wn]
	pc := c.pc.Load()
	for len(ms) > 0 {
		n, err := pc.Write(ms)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			c.g.errs.Add(1)
			n = 1
		}
		ms = ms[n:]
	}
	c.wn = 0
}

func (c *batchConn) Close() error {
	c.wmu.Lock()
	c.sendLocked()
	c.closed = true
	c.wmu.Unlock()
	return c.pc.Load().Close()
}

// batched wraps a UDP socket in a batchConn of g; other sockets (a lab
// network's) are returned as they are.
func batched(c net.PacketConn, g *batchGroup, batch int, detached bool) net.PacketConn {
	if u, ok := c.(*net.UDPConn); ok && g != nil {
		return newBatchConn(u, g, batch, detached)
	}
	return c
}
