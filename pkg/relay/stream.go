package relay

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/p2pd-go/p2pd/pkg/quicpipe"
	"github.com/quic-go/quic-go"
)

// ALPN is the QUIC application protocol of relayed streams.
const ALPN = "p2pd-relay"

// QUIC close codes.
const (
	codeRefused = quicpipe.CodeRefused
)

func quicTLS() (server, client *tls.Config, err error) { return quicpipe.TLS(ALPN) }

// quicConfig: see quicpipe.Config (its packet size and MTU rules are the
// relay's).
func quicConfig(idle time.Duration) *quic.Config { return quicpipe.Config(idle) }

// Conn is one relayed stream: a QUIC stream on its own QUIC connection
// between two relay addresses (pkg/quicpipe). Close sends the rest of the
// data and a FIN; the connection is closed once the peer has read to the
// end (or after the idle timeout). A lost allocation makes read and write
// errors ErrAllocationLost with the server and cause.
type Conn struct {
	*quicpipe.Conn
}

func (a *allocation) pipeOptions(linger time.Duration) quicpipe.Options {
	return quicpipe.Options{Linger: linger, Prefix: "relay", Done: a.done,
		Lost: func(what string) error {
			if lost := a.lost(); lost != nil {
				return wrapf(lost, "%s", what)
			}
			return nil
		}}
}

func newConn(a *allocation, qc *quicpipe.Conn) *Conn {
	a.m.streamsActive.Inc()
	go func() {
		<-qc.Context().Done()
		a.m.streamsActive.Dec()
	}()
	return &Conn{qc}
}

// dial opens a stream to peer over allocation a.
func dial(ctx context.Context, a *allocation, peer net.Addr, tlsConf *tls.Config, qconf *quic.Config, linger time.Duration) (*Conn, error) {
	c, err := quicpipe.Dial(ctx, a.qt, peer, tlsConf, qconf, a.pipeOptions(linger))
	if err != nil {
		return nil, err
	}
	return newConn(a, c), nil
}

// acceptStream waits for the stream of an incoming connection and its hello.
func acceptStream(ctx context.Context, a *allocation, qc *quic.Conn, linger time.Duration) (*Conn, error) {
	c, err := quicpipe.Accept(ctx, qc, a.pipeOptions(linger))
	if err != nil {
		return nil, err
	}
	return newConn(a, c), nil
}
