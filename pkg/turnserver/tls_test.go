package turnserver

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"github.com/p2pd-go/p2pd/internal/testcert"

	"github.com/pion/logging"
	"github.com/pion/turn/v3"
)

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	c := testcert.New(t, "turnd test")
	return c.TLS, c.Pool
}

func TestRelayOverTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	s, _ := testServer(t, func(c *Config) {
		loopbackAllowed(c)
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	addr := s.TLSAddrs()[0].String()
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	conn := turn.NewSTUNConn(tc)
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: "alice", Password: "alice-pw", Realm: testRealm, LoggerFactory: lf,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close(); _ = conn.Close() }()
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	relayEcho(t, relay, echoPeer(t), []byte("over tls"))
	// Refusals reach TLS clients too.
	if _, err := relay.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(169, 254, 169, 254), Port: 80}); !containsCode(err, "403") {
		t.Fatalf("metadata peer over TLS: err = %v, want 403", err)
	}
}
