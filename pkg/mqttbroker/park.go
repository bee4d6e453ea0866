package mqttbroker

import (
	"errors"
	"os"
	"sync"
	"time"
)

// An idle client holds no goroutine. mochi (patched, third_party/mochi)
// asks its connection to Park before it reads each packet; a flowConn
// answers from its own read buffer when that holds bytes, else reads the
// socket, waiting for input in the read loop's goroutine. When nothing came
// for 1-2 s (parkAfter), the wait moves to the broker's parker
// (one epoll instance, park_linux.go) and the goroutine ends: its stack,
// 16 KiB once a connection has been set up, is freed. Input, the close of
// the connection or its keepalive deadline brings the loop back in a new
// goroutine. Right after CONNACK a connection parks without waiting, so
// 10,000 clients connecting at once do not hold 10,000 grown stacks.
//
// The read buffer is flowConn's (readBufSize, from a pool, given back as
// soon as it is empty); mochi's own is set to its 16-byte minimum. Off
// Linux, and for TLS and WebSocket connections, the loop never parks.

// parkAfter is how often the parker looks for read loops waiting in their
// goroutines; one that waited through a whole period parks, so a loop
// parks after 1-2 s without input.
const parkAfter = time.Second

// readBufSize is how much one read of the socket takes at most.
const readBufSize = 4096

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// errNoInput is a read that found nothing and did not wait.
var errNoInput = errors.New("mqttbroker: no input")

// Park implements mqtt.ParkConn (see above). It runs in the read loop's
// goroutine, as Read does.
func (c *flowConn) Park(resume func()) bool {
	if len(c.rb) > 0 || c.rerr != nil {
		return false
	}
	c.flushHeld()
	p := c.lim.park
	if p == nil || !c.raw.ok() {
		return false
	}
	buf := readBufs.Get().(*[]byte)
	var n int
	var err error
	if !c.setUp {
		c.setUp = true
		n, err = c.raw.tryRead(*buf)
	} else {
		n, err = c.readWatched(p, *buf)
	}
	if errors.Is(err, errNoInput) {
		readBufs.Put(buf)
		return p.park(c, resume)
	}
	c.rbuf, c.rb, c.rerr = buf, (*buf)[:n], err
	return false
}

// readWatched reads into b, waiting for input in this goroutine; errNoInput
// when the parker's sweep found it waiting for over parkAfter and woke it.
// The sweep's wake-up is a read deadline in the past, so that no read
// arms a timer of its own (a timer per wait in mochi's write loop cost 10 %
// of the light-load median latency: it woke the network poller's thread).
func (c *flowConn) readWatched(p *parker, b []byte) (int, error) {
	p.watch(c)
	c.kmu.Lock()
	c.inRead, c.readSince = true, p.sweeps.Load()
	c.kmu.Unlock()
	n, err := c.raw.read(b)
	c.kmu.Lock()
	kicked := c.kicked
	c.inRead, c.kicked = false, false
	if kicked {
		_ = c.Conn.SetReadDeadline(c.rdeadline)
	}
	c.kmu.Unlock()
	if kicked && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, errNoInput
	}
	return n, err
}

// wakeRead wakes a read that has waited since before the last sweep but one
// (so for parkAfter to twice that). Called by the parker's sweep.
func (c *flowConn) wakeRead(sweep int64) {
	c.kmu.Lock()
	defer c.kmu.Unlock()
	if c.inRead && !c.kicked && c.readSince <= sweep-2 {
		c.kicked = true
		_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// Read is mochi's read of the connection: from the read buffer when it
// holds bytes, else one read of the socket (raw system calls on a plain
// socket, rawwrite_linux.go; net.Conn otherwise), buffered unless p is as
// large as the buffer.
func (c *flowConn) Read(p []byte) (int, error) {
	if len(c.rb) == 0 && c.rerr == nil {
		c.flushHeld()
		// TLS and WebSocket connections buffer their input themselves and
		// never park: no buffer of ours held through their idle waits.
		if len(p) >= readBufSize || !c.raw.ok() {
			return c.readSocket(p)
		}
		buf := readBufs.Get().(*[]byte)
		n, err := c.readSocket(*buf)
		c.rbuf, c.rb, c.rerr = buf, (*buf)[:n], err
	}
	if len(c.rb) == 0 {
		err := c.rerr
		c.rerr = nil
		c.putReadBuf()
		return 0, err
	}
	n := copy(p, c.rb)
	c.rb = c.rb[n:]
	if len(c.rb) == 0 {
		c.putReadBuf()
	}
	c.inputPending.Store(len(c.rb) > 0)
	return n, nil
}

func (c *flowConn) readSocket(p []byte) (int, error) {
	if c.raw.ok() {
		return c.raw.read(p)
	}
	return c.Conn.Read(p)
}

func (c *flowConn) putReadBuf() {
	if c.rbuf != nil {
		readBufs.Put(c.rbuf)
		c.rbuf, c.rb = nil, nil
	}
}

// SetDeadline and SetReadDeadline keep the read deadline mochi sets (the
// keepalive), which a parked connection's wake-up and readWithin honour.
func (c *flowConn) SetDeadline(t time.Time) error {
	c.rdeadline = t
	return c.Conn.SetDeadline(t)
}

func (c *flowConn) SetReadDeadline(t time.Time) error {
	c.rdeadline = t
	return c.Conn.SetReadDeadline(t)
}

// Ended implements mqtt.ParkConn: mochi is done with the connection.
func (c *flowConn) Ended(err error) {
	if c.ended != nil {
		c.ended(err)
	}
}

// run runs (part of) the connection's read loop; a panic in it (mochi's
// decoders panic on some malformed input) ends only this connection.
func (c *flowConn) run(loop func()) {
	if c.panicked == nil {
		loop()
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.panicked(r)
		}
	}()
	loop()
}

// closeSocket closes the socket under the connection and brings a parked
// read loop back to see it closed.
func (c *flowConn) closeSocket() error {
	c.closing.Store(true)
	err := c.Conn.Close()
	if c.lim.park != nil {
		c.lim.park.unwatch(c)
		c.lim.park.wakeConn(c)
	}
	return err
}
