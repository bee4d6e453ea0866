package api

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// maxHead bounds a request's line and headers. Longer heads get P2PD's
// error JSON instead of net/http's plain 431.
const maxHead = 16 << 10

// sniffTimeout bounds how long a client may take to send its request head.
const sniffTimeout = 10 * time.Second

// sniffListener reads the head of the one request each connection carries
// (keep-alive is off, as in P2PD) before net/http sees it, for what net/http
// answers in plain text or refuses outright:
//   - the manual's pipe request, which has no Host header
//     ("GET /p2p/pipe/con_name HTTP/1.1\r\nOrigin: null\r\n\r\n"): relayed here;
//   - heads that do not parse (bad escapes, bad request lines), heads over
//     maxHead, and other requests without a Host header: P2PD's error JSON.
//
// Everything else is handed to net/http with the bytes read so far replayed.
type sniffListener struct {
	net.Listener
	s      *Server
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	accErr error
}

func newSniffListener(ln net.Listener, s *Server) *sniffListener {
	l := &sniffListener{Listener: ln, s: s, conns: make(chan net.Conn), done: make(chan struct{})}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *sniffListener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			l.closeWith(err)
			return
		}
		go l.sniff(c)
	}
}

// Accept returns the next connection for net/http.
func (l *sniffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		if l.accErr != nil {
			return nil, l.accErr
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections already handed out are net/http's.
func (l *sniffListener) Close() error { return l.closeWith(nil) }

// closeWith closes once; accErr (what Accept reports) is set before done
// is closed, so Accept reads it safely after <-done.
func (l *sniffListener) closeWith(acceptErr error) error {
	var err error
	l.once.Do(func() {
		l.accErr = acceptErr
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}

func (l *sniffListener) sniff(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	var seen bytes.Buffer
	br := bufio.NewReaderSize(io.TeeReader(io.LimitReader(c, maxHead), &seen), 4096)
	req, err := http.ReadRequest(br)
	_ = c.SetReadDeadline(time.Time{})
	switch {
	case err != nil && seen.Len() == 0:
		c.Close() // connected and left, or said nothing in time
		return
	case err != nil && seen.Len() >= maxHead:
		l.refuse(c, errBadInput, "request line and headers are over 16 KiB")
		return
	case err != nil:
		l.refuse(c, errBadInput, "malformed HTTP request: "+cleanErr(err))
		return
	}
	// ReadRequest moves the Host header to req.Host.
	if req.Host == "" && req.ProtoAtLeast(1, 1) {
		if rest, ok := strings.CutPrefix(req.URL.Path, "/p2p/pipe/"); ok && req.Method == http.MethodGet {
			l.s.rawPipe(c, req, rest, seen.Bytes()[seen.Len()-br.Buffered():])
			return
		}
		l.refuse(c, errBadInput, "missing Host header (HTTP/1.1 requires one; only the manual's /p2p/pipe request may omit it)")
		return
	}
	rc := &replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(seen.Bytes()), c)}
	select {
	case l.conns <- rc:
	case <-l.done:
		c.Close()
	}
}

// refuse answers with P2PD's error JSON and closes.
func (l *sniffListener) refuse(c net.Conn, code int, msg string) {
	defer c.Close()
	writeRawJSON(c, map[string]any{"error": code, "msg": msg})
}

// writeRawJSON writes a whole HTTP response on a connection net/http does
// not own.
func writeRawJSON(c net.Conn, body map[string]any) {
	b, _ := marshal(body)
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	resp := http.Response{StatusCode: http.StatusOK, ProtoMajor: 1, ProtoMinor: 1, Close: true,
		Header:        http.Header{"Content-Type": {"application/json"}},
		ContentLength: int64(len(b)), Body: io.NopCloser(bytes.NewReader(b))}
	_ = resp.Write(c)
}

func cleanErr(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// replayConn gives net/http the bytes the sniffer read, then the rest.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(b []byte) (int, error) { return c.r.Read(b) }
