package api

import (
	"fmt"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// maxAcceptors bounds concurrent /p2p/accept waits.
const maxAcceptors = 16

// acceptors are API clients waiting for the next inbound connection.
type acceptors struct {
	mu      sync.Mutex
	waiters []chan *con
}

// wait registers a waiter; nil when too many wait.
func (a *acceptors) wait() chan *con {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.waiters) >= maxAcceptors {
		return nil
	}
	ch := make(chan *con, 1)
	a.waiters = append(a.waiters, ch)
	return ch
}

// cancel removes a waiter; it returns a connection handed to it meanwhile.
func (a *acceptors) cancel(ch chan *con) *con {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, w := range a.waiters {
		if w == ch {
			a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
			break
		}
	}
	select {
	case cn := <-ch:
		return cn
	default:
		return nil
	}
}

// offer hands an inbound connection to the longest waiter, if any (and if
// claim, under the acceptors' lock, still gets it).
func (a *acceptors) offer(cn *con, claim func(*con) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.waiters) == 0 || !claim(cn) {
		return
	}
	ch := a.waiters[0]
	a.waiters = a.waiters[1:]
	ch <- cn
}

// accept (p2pd extension) takes the oldest inbound connection that no
// accept has taken yet, or waits for the next one, then
// answers 200 with its name and peer in X-P2pd-Name and X-P2pd-Peer and
// turns the HTTP connection into its relay, as /p2p/pipe does. Messages
// that arrive before the relay starts are queued and relayed first.
// Options: /timeout/<seconds> (default 60). On timeout: error 5.
func (s *Server) accept(c echo.Context) error {
	parts, err := segments(c, 2) // /p2p/accept/<options>
	if err != nil {
		return fail(c, errBadInput, err.Error())
	}
	o, err := parsePairs(parts)
	if err != nil {
		return fail(c, errBadInput, err.Error())
	}
	if o.timeout == 0 {
		o.timeout = 60 * time.Second
	}
	cn, err := s.waitInbound(c, o.timeout)
	if err != nil {
		return err
	}
	if cn == nil {
		return fail(c, errTimeout, "no inbound connection before the timeout")
	}
	raw, pending, err := hijack(c)
	if raw == nil {
		s.cons.unclaim(cn) // a later accept may take it
		return err
	}
	head := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n" +
		"X-P2pd-Name: " + cn.name + "\r\nX-P2pd-Peer: " + cn.pipe.Peer + "\r\n\r\n"
	if _, err := raw.Write([]byte(head)); err != nil {
		raw.Close()
		s.cons.unclaim(cn)
		return nil
	}
	go s.relay(raw, pending, cn)
	return nil
}

// waitInbound claims an unclaimed inbound connection or waits for one.
func (s *Server) waitInbound(c echo.Context, timeout time.Duration) (*con, error) {
	ch := s.accepts.wait()
	if ch == nil {
		return nil, fail(c, errTimeout, fmt.Sprintf("too many clients wait to accept (at most %d)", maxAcceptors))
	}
	// Registered first, then looked: an inbound connection arriving in
	// between is offered to ch, so none is missed.
	if cn := s.cons.claimOldest(); cn != nil {
		if other := s.accepts.cancel(ch); other != nil {
			s.cons.unclaim(other)
		}
		return cn, nil
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var cn *con
	select {
	case cn = <-ch:
	case <-timer.C:
	case <-c.Request().Context().Done():
	case <-s.ctx.Done():
	}
	if cn == nil {
		cn = s.accepts.cancel(ch)
	}
	if cn == nil {
		return nil, fail(c, errTimeout, "no inbound connection before the timeout")
	}
	return cn, nil
}
