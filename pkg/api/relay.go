package api

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/pipe"
)

// pipe turns the HTTP connection into a raw two-way relay with the named
// connection, as P2PD does: no HTTP response is written; each chunk read
// from the HTTP client is sent as one message, and every message the
// connection receives (its all-messages queue) is written back. An unknown
// name closes the socket.
func (s *Server) pipe(c echo.Context) error {
	n, _ := name(c)
	cn := s.cons.get(n)
	raw, pending, err := hijack(c)
	if raw == nil {
		return err
	}
	if cn == nil {
		raw.Close()
		return nil
	}
	go s.relay(raw, pending, cn)
	return nil
}

// hijack takes the connection from net/http, with any bytes read past the
// request. A nil conn means there is nothing more to do (err is the answer).
func hijack(c echo.Context) (net.Conn, []byte, error) {
	hj, ok := c.Response().Writer.(http.Hijacker)
	if !ok {
		return nil, nil, fail(c, errNoMethod, "this connection cannot be relayed")
	}
	raw, buf, err := hj.Hijack()
	if err != nil {
		return nil, nil, nil
	}
	c.Response().Committed = true
	var pending []byte
	if n := buf.Reader.Buffered(); n > 0 {
		pending = make([]byte, n)
		k, _ := buf.Read(pending)
		pending = pending[:k]
	}
	return raw, pending, nil
}

// rawPipe serves the manual's pipe request, which has no Host header and so
// never reaches net/http:
//
//	GET /p2p/pipe/con_name HTTP/1.1\r\nOrigin: null\r\n\r\n
//
// Its "Origin: null" is accepted even without Config.AllowNullOrigin: a
// browser always sends Host, and the sniffer reads only the first bytes of
// a connection, which a browser always fills with its own request line
// and Host header, so no web page can produce this request (a request
// smuggled into a body or a later request on the connection is never
// looked at: one request per connection). Any other Origin follows the
// usual rule, and a configured token is required (Authorization header).
func (s *Server) rawPipe(c net.Conn, req *http.Request, escapedName string, pending []byte) {
	if o := req.Header.Get("Origin"); o != "" && o != "null" && !s.originAllowed(o) {
		c.Close()
		return
	}
	if !checkToken(s.cfg.Token, req.Header.Get("Authorization"), req.URL.Query().Get("token")) {
		c.Close()
		return
	}
	parts, err := splitPath(escapedName, 0)
	if err != nil || len(parts) != 1 || !utf8.ValidString(parts[0]) {
		c.Close()
		return
	}
	cn := s.cons.get(parts[0])
	if cn == nil {
		c.Close()
		return
	}
	s.relay(c, pending, cn)
}

// relayChunk is the most the relay reads from its client per message: the
// largest message a pipe carries, so a fast client costs few system calls.
const relayChunk = agent.MaxMessage

// relayWriteTimeout bounds one write to a relay's client: a client that
// stops reading holds the peer back that long, then the relay ends.
const relayWriteTimeout = 30 * time.Second

// relay copies between an API client's socket and a named connection until
// either side ends. The connection's all-messages queue is diverted to the
// relay while it runs: what was queued is written first, then each message
// as it arrives, on the pipe's reader, so a slow API client holds the peer
// back instead of losing data. A message the client does not take (it left
// or stopped reading) goes back into the queue. A second relay on the same
// connection is refused (closed) unless the first ends within about 1 s.
func (s *Server) relay(raw net.Conn, pending []byte, cn *con) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	defer raw.Close()
	_ = raw.SetDeadline(time.Time{}) // none of net/http's deadlines
	var wmu sync.Mutex               // the client's socket; held while queued messages go first
	stopped := false                 // under wmu: the relay ended, messages go back to the queue
	write := func(b []byte) error {
		_ = raw.SetWriteDeadline(time.Now().Add(relayWriteTimeout))
		_, err := raw.Write(b)
		return err
	}
	handler := func(m pipe.Message) {
		wmu.Lock()
		defer wmu.Unlock()
		if !stopped && write(m.Data) == nil {
			return
		}
		stopped = true
		cancel()
		_ = cn.pipe.Requeue(agent.AllMessages, m)
	}
	wmu.Lock()
	// A relay that just ended may still be letting go of the queue.
	old, err := cn.pipe.Divert(agent.AllMessages, handler)
	for wait := 5 * time.Millisecond; err != nil && wait < time.Second; wait *= 2 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		old, err = cn.pipe.Divert(agent.AllMessages, handler)
	}
	if err != nil {
		wmu.Unlock()
		return
	}
	for i, m := range old {
		if write(m.Data) != nil {
			for _, m := range old[i:] {
				_ = cn.pipe.Requeue(agent.AllMessages, m)
			}
			stopped = true
			cancel()
			break
		}
	}
	wmu.Unlock()
	defer func() {
		cancel()
		raw.Close() // a write in progress fails: its message goes back
		wmu.Lock()
		stopped = true
		wmu.Unlock()
		cn.pipe.Undivert(agent.AllMessages)
	}()
	go func() { // the relay ends with the connection
		select {
		case <-cn.pipe.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	go func() { // ends the client's read below when the relay stops
		<-ctx.Done()
		raw.Close()
	}()
	// Sends get their own deadline, not the relay's context: a failed send
	// closes the P2P pipe, which the API client going away must not do.
	send := func(b []byte) error { // Send copies b before it returns
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		return cn.pipe.Send(sctx, b)
	}
	if len(pending) > 0 && send(pending) != nil {
		return
	}
	b := make([]byte, relayChunk)
	for {
		n, err := raw.Read(b)
		if n > 0 {
			if send(b[:n]) != nil {
				return
			}
		}
		if err != nil { // the client closed its side: the relay ends (the pipe stays open)
			return
		}
	}
}
