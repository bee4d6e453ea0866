package relay

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

// ALPN is the QUIC application protocol of relayed streams.
const ALPN = "p2pd-relay"

// streamHello is the first byte a dialer sends on its stream: QUIC tells the
// peer about a stream only once it carries data, and Accept should not wait
// for the application's first write.
const streamHello = 0x01

// QUIC close codes.
const (
	codeClosed  quic.ApplicationErrorCode = 0
	codeRefused quic.ApplicationErrorCode = 1
)

var (
	certOnce sync.Once
	cert     tls.Certificate
	certErr  error
)

// processCert is this process's self-signed QUIC certificate. It proves
// nothing: peers authenticate each other with the Noise handshake the node
// runs on the stream. TLS here only gives QUIC its encryption.
func processCert() (tls.Certificate, error) {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			certErr = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: ALPN},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(100 * 365 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, DNSNames: []string{ALPN},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			certErr = err
			return
		}
		cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	if certErr != nil {
		return tls.Certificate{}, fmt.Errorf("relay: quic certificate: %w", certErr)
	}
	return cert, nil
}

func quicTLS() (server, client *tls.Config, err error) {
	c, err := processCert()
	if err != nil {
		return nil, nil, err
	}
	server = &tls.Config{Certificates: []tls.Certificate{c}, NextProtos: []string{ALPN}, MinVersion: tls.VersionTLS13}
	client = &tls.Config{
		InsecureSkipVerify: true, // see processCert: Noise authenticates the peer
		NextProtos:         []string{ALPN}, ServerName: ALPN, MinVersion: tls.VersionTLS13,
	}
	return server, client, nil
}

// quicConfig: 1280-byte packets fit every relayed path (TURN adds at most 36
// bytes of headers), path-MTU discovery off (probes would be relayed and
// charged), keep-alives every 15 s hold the NAT mapping to the TURN server.
func quicConfig(idle time.Duration) *quic.Config {
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

// Conn is one relayed stream: a QUIC stream on its own QUIC connection
// between two relay addresses. Close sends the rest of the data and a FIN;
// the connection is closed once the peer has read to the end (or after the
// idle timeout).
type Conn struct {
	qc      *quic.Conn
	st      *quic.Stream
	a       *allocation
	linger  time.Duration
	closed  chan struct{}
	eof     sync.Once     // the peer's FIN was read: tell it
	peerEOF chan struct{} // closed when the peer has read our FIN
	once    sync.Once
}

func newConn(a *allocation, qc *quic.Conn, st *quic.Stream, linger time.Duration) *Conn {
	c := &Conn{qc: qc, st: st, a: a, linger: linger, closed: make(chan struct{}), peerEOF: make(chan struct{})}
	a.m.streamsActive.Inc()
	go func() {
		<-qc.Context().Done()
		a.m.streamsActive.Dec()
	}()
	go c.watchPeerEOF()
	return c
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

// wrap names the peer and makes a dead allocation plain: ErrAllocationLost
// with the server and cause. Deadline errors stay as they are (net.Error
// with Timeout true).
func (c *Conn) wrap(op string, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	select {
	case <-c.closed:
		return fmt.Errorf("relay: %s %s: %w", op, c.RemoteAddr(), net.ErrClosed)
	default:
	}
	if lost := c.a.lost(); lost != nil {
		return wrapf(lost, "%s %s", op, c.RemoteAddr())
	}
	var idle *quic.IdleTimeoutError
	if errors.As(err, &idle) {
		return fmt.Errorf("relay: %s %s: peer unreachable (nothing heard for %v): %w", op, c.RemoteAddr(), c.linger, err)
	}
	return fmt.Errorf("relay: %s %s: %w", op, c.RemoteAddr(), err)
}

// Close sends a FIN after the data written so far and stops reading. It does
// not block: the QUIC connection stays until the peer has read everything
// (it says so), the peer closes, or the idle timeout passes.
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		_ = c.st.Close()
		c.st.CancelRead(0)
		go func() {
			t := time.NewTimer(c.linger)
			defer t.Stop()
			select {
			case <-c.peerEOF:
			case <-c.qc.Context().Done():
			case <-c.a.done:
			case <-t.C:
			}
			_ = c.qc.CloseWithError(codeClosed, "closed")
		}()
	})
	return nil
}

// LocalAddr is our relayed transport address.
func (c *Conn) LocalAddr() net.Addr { return c.qc.LocalAddr() }

// RemoteAddr is the peer's relayed transport address.
func (c *Conn) RemoteAddr() net.Addr { return c.qc.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.st.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.st.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.st.SetWriteDeadline(t) }

// dial opens a stream to peer over allocation a.
func dial(ctx context.Context, a *allocation, peer net.Addr, tlsConf *tls.Config, qconf *quic.Config, linger time.Duration) (*Conn, error) {
	qc, err := a.qt.Dial(ctx, peer, tlsConf, qconf)
	if err != nil {
		return nil, err
	}
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		_ = qc.CloseWithError(codeRefused, "no stream")
		return nil, err
	}
	if _, err := st.Write([]byte{streamHello}); err != nil {
		_ = qc.CloseWithError(codeRefused, "no stream")
		return nil, err
	}
	return newConn(a, qc, st, linger), nil
}

// acceptStream waits for the stream of an incoming connection and its hello.
func acceptStream(ctx context.Context, a *allocation, qc *quic.Conn, linger time.Duration) (*Conn, error) {
	st, err := qc.AcceptStream(ctx)
	if err != nil {
		_ = qc.CloseWithError(codeRefused, "no stream")
		return nil, err
	}
	dl, _ := ctx.Deadline()
	_ = st.SetReadDeadline(dl)
	var b [1]byte
	if _, err := io.ReadFull(st, b[:]); err != nil || b[0] != streamHello {
		_ = qc.CloseWithError(codeRefused, "bad hello")
		if err == nil {
			err = fmt.Errorf("bad stream hello %#x", b[0])
		}
		return nil, err
	}
	_ = st.SetReadDeadline(time.Time{})
	return newConn(a, qc, st, linger), nil
}
