package mqttbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// listener is a mochi listener over TCP, optionally TLS, optionally carrying
// MQTT in WebSocket binary frames. Unlike mochi's own listeners it can bind
// port 0 (tests), closes connections that send no CONNECT within
// connectTimeout, counts accepted connections, and closes every connection
// it handed out when it is closed.
type listener struct {
	id             string // tcp, tls, ws, wss (also the metric label)
	addr           string
	tlsConfig      *tls.Config
	websocket      bool
	connectTimeout time.Duration
	hook           *hook

	ln   net.Listener
	http *http.Server
	log  *slog.Logger

	mu     sync.Mutex
	conns  map[*flowConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func (l *listener) ID() string { return l.id }

func (l *listener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *listener) Protocol() string { return l.id }

func (l *listener) Init(log *slog.Logger) error {
	l.log = log
	l.conns = map[*flowConn]struct{}{}
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return fmt.Errorf("mqttbroker: listen %s %s: %w", l.id, l.addr, err)
	}
	if l.tlsConfig != nil {
		ln = tls.NewListener(ln, l.tlsConfig)
	}
	l.ln = ln
	return nil
}

func (l *listener) Serve(establish listeners.EstablishFn) {
	if l.websocket {
		l.serveWebsocket(establish)
		return
	}
	backoff := 5 * time.Millisecond
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors (EMFILE) and the like pass: retry
			// with a growing pause instead of ending the listener for good.
			l.hook.logLimit("accept", "accept failed; retrying", "listener", l.id, "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		l.handle(conn, establish)
	}
}

// handle runs one connection through mochi, in a goroutine of its own
// until the client is connected; after that its read loop may park (see
// park.go) and flowConn.Ended tells when mochi is done with it.
func (l *listener) handle(conn net.Conn, establish listeners.EstablishFn) {
	fc := newFlowConn(conn, l.hook.flow)
	if !l.track(fc) {
		conn.Close()
		return
	}
	l.hook.metrics.connections.WithLabelValues(l.id).Inc()
	// mochi replaces this deadline with the keepalive one after CONNECT.
	_ = fc.SetDeadline(time.Now().Add(l.connectTimeout))
	l.wg.Add(1)
	var once sync.Once
	done := func() {
		once.Do(func() {
			l.untrack(fc)
			l.wg.Done()
		})
	}
	fc.ended = func(err error) {
		l.report(err, fc.hasSession())
		done()
	}
	// mochi's packet decoders can panic on malformed input (found by
	// FuzzConnBytes: a short MQTT 5 SUBSCRIBE); one client must not take
	// the broker down.
	fc.panicked = func(r any) {
		l.hook.recovered(fc, r)
		done()
	}
	go fc.run(func() { _ = establish(l.id, fc) })
}

// report logs and counts how a connection ended; session: its CONNECT
// had passed (a timeout is then its keepalive running out).
func (l *listener) report(err error, session bool) {
	var ne net.Error
	switch {
	case err == nil:
	case errors.Is(err, packets.ErrServerBusy):
		l.hook.refuse(LimitClients, "connection refused: server at its client limit", "listener", l.id, "max", l.hook.limits.MaxClients)
	case errors.Is(err, packets.ErrPacketTooLarge):
		l.hook.refuse(LimitPacketSize, "connection closed: packet over the size limit", "listener", l.id, "max", l.hook.limits.MaxPacketSize)
	case errors.As(err, &ne) && ne.Timeout() && !session:
		l.hook.refuse(LimitConnectTime, "connection closed: no CONNECT in time", "listener", l.id, "timeout", l.connectTimeout)
	case errors.Is(err, packets.ErrBadUsernameOrPassword), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	default:
		l.log.Debug("connection ended", "err", err)
	}
}

func (l *listener) track(c *flowConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *listener) untrack(c *flowConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	_ = c.closeSocket()
}

// Close stops accepting, disconnects the listener's clients and waits for
// their connections to end. mochi's closeClients is not used: see
// hook.disconnectListener.
func (l *listener) Close(_ listeners.CloseFn) {
	l.mu.Lock()
	already := l.closed
	l.closed = true
	hs := l.http
	l.mu.Unlock()
	if already {
		return
	}
	if hs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = hs.Shutdown(ctx)
		cancel()
	}
	if l.ln != nil {
		l.ln.Close()
	}
	l.hook.disconnectListener(l.id)
	l.mu.Lock()
	for c := range l.conns {
		_ = c.closeSocket()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

func (l *listener) serveWebsocket(establish listeners.EstablishFn) {
	up := &websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		// Browser apps on any origin may connect; they still need a login
		// unless anonymous access is on.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		done := make(chan struct{})
		l.handle(&wsConn{Conn: c.NetConn(), c: c, done: done}, establish)
		<-done
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: l.connectTimeout}
	l.mu.Lock()
	closed := l.closed
	l.http = srv // Close reads it from another goroutine
	l.mu.Unlock()
	if closed {
		return
	}
	err := srv.Serve(l.ln)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "err", err)
	}
}

// wsConn carries MQTT bytes in WebSocket binary messages.
type wsConn struct {
	net.Conn
	c    *websocket.Conn
	r    io.Reader
	done chan struct{}
	once sync.Once
}

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errors.New("mqttbroker: websocket message is not binary")
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			if n == 0 {
				continue
			}
			return n, nil
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (ws *wsConn) Close() error {
	ws.once.Do(func() { close(ws.done) })
	return ws.c.Close()
}
