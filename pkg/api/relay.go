package api

import (
	"context"
	"errors"
	"net/http"
	"time"

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
	cn := s.cons.get(name(c))
	hj, ok := c.Response().Writer.(http.Hijacker)
	if !ok {
		return fail(c, errNoMethod, "this connection cannot be relayed")
	}
	raw, buf, err := hj.Hijack()
	if err != nil {
		return nil
	}
	c.Response().Committed = true
	if cn == nil {
		raw.Close()
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { // peer -> HTTP client
		defer cancel()
		defer raw.Close()
		for {
			m, err := cn.pipe.Recv(ctx, agent.AllMessages, 0)
			if errors.Is(err, pipe.ErrTimeout) {
				continue
			}
			if err != nil {
				return
			}
			if _, err := raw.Write(m.Data); err != nil {
				return
			}
		}
	}()
	// Sends get their own deadline, not the relay's context: a failed send
	// closes the P2P pipe, which the HTTP client going away must not do.
	send := func(b []byte) error {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		return cn.pipe.Send(sctx, append([]byte(nil), b...))
	}
	go func() { // HTTP client -> peer
		defer cancel()
		defer raw.Close()
		b := make([]byte, 64<<10)
		if n := buf.Reader.Buffered(); n > 0 { // bytes read with the request
			k, _ := buf.Read(b[:n])
			if send(b[:k]) != nil {
				return
			}
		}
		for {
			n, err := raw.Read(b)
			if n > 0 {
				if send(b[:n]) != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return nil
}
