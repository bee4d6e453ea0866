// Package quicpipe carries one byte stream over its own QUIC connection on
// a UDP socket: the TLS and QUIC settings both ends use, and a net.Conn
// over the single stream (Dial, Accept). The relay strategy runs it over a
// TURN allocation (pkg/relay), the UDP punch over a punched socket
// (pkg/punch). TLS here only gives QUIC its encryption: peers authenticate
// each other with the Noise handshake the node runs on the stream.
package quicpipe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// streamHello is the first byte a dialer sends on its stream: QUIC tells the
// peer about a stream only once it carries data, and Accept should not wait
// for the application's first write.
const streamHello = 0x01

// QUIC close codes.
const (
	CodeClosed  quic.ApplicationErrorCode = 0
	CodeRefused quic.ApplicationErrorCode = 1
)

// certName names the self-signed certificate.
const certName = "p2pd"

var (
	certOnce sync.Once
	cert     tls.Certificate
	certErr  error
)

// processCert is this process's self-signed QUIC certificate. It proves
// nothing (see the package comment).
func processCert() (tls.Certificate, error) {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			certErr = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: certName},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(100 * 365 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, DNSNames: []string{certName},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			certErr = err
			return
		}
		cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	if certErr != nil {
		return tls.Certificate{}, fmt.Errorf("quicpipe: certificate: %w", certErr)
	}
	return cert, nil
}

// TLS is the server and client TLS configuration for the application
// protocol alpn (one per strategy, so a relayed QUIC handshake cannot be
// mistaken for a punched one).
func TLS(alpn string) (server, client *tls.Config, err error) {
	c, err := processCert()
	if err != nil {
		return nil, nil, err
	}
	server = &tls.Config{Certificates: []tls.Certificate{c}, NextProtos: []string{alpn}, MinVersion: tls.VersionTLS13}
	client = &tls.Config{
		InsecureSkipVerify: true, // see the package comment: Noise authenticates the peer
		NextProtos:         []string{alpn}, ServerName: certName, MinVersion: tls.VersionTLS13,
	}
	return server, client, nil
}

// Config is the QUIC configuration of a pipe: 1280-byte packets fit every
// path (TURN adds at most 36 bytes of headers), path-MTU discovery off
// (over a relay its probes would be relayed and charged), keep-alives
// every 15 s hold the NAT mappings on the way, and one stream each way.
// idle is how long a silent peer is waited for.
func Config(idle time.Duration) *quic.Config {
	return &quic.Config{
		InitialPacketSize:       1280,
		DisablePathMTUDiscovery: true,
		KeepAlivePeriod:         15 * time.Second,
		MaxIdleTimeout:          idle,
		HandshakeIdleTimeout:    5 * time.Second,
		MaxIncomingStreams:      1,
		MaxIncomingUniStreams:   1,
	}
}

// Options tune a Conn.
type Options struct {
	// Linger bounds how long a closed Conn's QUIC connection waits for the
	// peer to read to the end; it is also the idle timeout errors name.
	Linger time.Duration
	// Prefix starts every error (the package using the pipe: "relay").
	Prefix string
	// Lost, when set, explains a dead transport: a non-nil error it returns
	// for what failed ("read from 192.0.2.1:3478") replaces the read or
	// write error.
	Lost func(what string) error
	// Done, when set, ends a closed Conn's linger early (the transport
	// went away).
	Done <-chan struct{}
}

// Conn is one stream on its own QUIC connection. Close sends the rest of
// the data and a FIN; the connection is closed once the peer has read to
// the end (or after the linger).
type Conn struct {
	qc      *quic.Conn
	st      *quic.Stream
	o       Options
	closed  chan struct{}
	eof     sync.Once     // the peer's FIN was read: tell it
	peerEOF chan struct{} // closed when the peer has read our FIN
	once    sync.Once
}

func newConn(qc *quic.Conn, st *quic.Stream, o Options) *Conn {
	if o.Prefix == "" {
		o.Prefix = "quicpipe"
	}
	c := &Conn{qc: qc, st: st, o: o, closed: make(chan struct{}), peerEOF: make(chan struct{})}
	go c.watchPeerEOF()
	return c
}

// Dial opens a QUIC connection to peer over tr and its stream.
func Dial(ctx context.Context, tr *quic.Transport, peer net.Addr, tlsConf *tls.Config, qconf *quic.Config, o Options) (*Conn, error) {
	qc, err := tr.Dial(ctx, peer, tlsConf, qconf)
	if err != nil {
		return nil, err
	}
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		_ = qc.CloseWithError(CodeRefused, "no stream")
		return nil, err
	}
	if _, err := st.Write([]byte{streamHello}); err != nil {
		_ = qc.CloseWithError(CodeRefused, "no stream")
		return nil, err
	}
	return newConn(qc, st, o), nil
}

// Accept waits for the stream of an incoming connection and its hello.
func Accept(ctx context.Context, qc *quic.Conn, o Options) (*Conn, error) {
	st, err := qc.AcceptStream(ctx)
	if err != nil {
		_ = qc.CloseWithError(CodeRefused, "no stream")
		return nil, err
	}
	dl, _ := ctx.Deadline()
	_ = st.SetReadDeadline(dl)
	var b [1]byte
	if _, err := io.ReadFull(st, b[:]); err != nil || b[0] != streamHello {
		_ = qc.CloseWithError(CodeRefused, "bad hello")
		if err == nil {
			err = fmt.Errorf("bad stream hello %#x", b[0])
		}
		return nil, err
	}
	_ = st.SetReadDeadline(time.Time{})
	return newConn(qc, st, o), nil
}

// watchPeerEOF waits for the peer's "read your FIN" note: a one-byte
// unidirectional stream.
func (c *Conn) watchPeerEOF() {
	us, err := c.qc.AcceptUniStream(c.qc.Context())
	if err != nil {
		return
	}
	var b [1]byte
	if _, err := io.ReadFull(us, b[:]); err == nil {
		close(c.peerEOF)
	}
}

func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.st.Read(p)
	if errors.Is(err, io.EOF) {
		c.eof.Do(func() {
			go func() {
				if us, err := c.qc.OpenUniStream(); err == nil {
					_, _ = us.Write([]byte{1})
					_ = us.Close()
				}
			}()
		})
		return n, io.EOF
	}
	if err != nil {
		return n, c.wrap("read from", err)
	}
	return n, nil
}

func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.st.Write(p)
	if err != nil {
		return n, c.wrap("write to", err)
	}
	return n, nil
}

// wrap names the peer and makes a dead transport plain (Options.Lost).
// Deadline errors stay as they are (net.Error with Timeout true).
func (c *Conn) wrap(op string, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	select {
	case <-c.closed:
		return fmt.Errorf("%s: %s %s: %w", c.o.Prefix, op, c.RemoteAddr(), net.ErrClosed)
	default:
	}
	if c.o.Lost != nil {
		if lost := c.o.Lost(fmt.Sprintf("%s %s", op, c.RemoteAddr())); lost != nil {
			return lost
		}
	}
	var idle *quic.IdleTimeoutError
	if errors.As(err, &idle) {
		return fmt.Errorf("%s: %s %s: peer unreachable (nothing heard for %v): %w", c.o.Prefix, op, c.RemoteAddr(), c.o.Linger, err)
	}
	return fmt.Errorf("%s: %s %s: %w", c.o.Prefix, op, c.RemoteAddr(), err)
}

// Close sends a FIN after the data written so far and stops reading. It does
// not block: the QUIC connection stays until the peer has read everything
// (it says so), the peer closes, the transport ends, or the linger passes.
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		_ = c.st.Close()
		c.st.CancelRead(0)
		go func() {
			t := time.NewTimer(c.o.Linger)
			defer t.Stop()
			select {
			case <-c.peerEOF:
			case <-c.qc.Context().Done():
			case <-c.o.Done:
			case <-t.C:
			}
			_ = c.qc.CloseWithError(CodeClosed, "closed")
		}()
	})
	return nil
}

// Abort closes the QUIC connection at once with code and reason.
func (c *Conn) Abort(code quic.ApplicationErrorCode, reason string) error {
	c.once.Do(func() { close(c.closed) })
	return c.qc.CloseWithError(code, reason)
}

// Context ends when the QUIC connection has closed.
func (c *Conn) Context() context.Context { return c.qc.Context() }

// LocalAddr is our transport address.
func (c *Conn) LocalAddr() net.Addr { return c.qc.LocalAddr() }

// RemoteAddr is the peer's transport address.
func (c *Conn) RemoteAddr() net.Addr { return c.qc.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.st.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.st.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.st.SetWriteDeadline(t) }
