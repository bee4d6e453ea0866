package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/p2pd-go/p2pd/pkg/relay"
)

// turnOptions are the relay flags.
type turnOptions struct {
	servers, user, passFile, caFile string
}

func (t *turnOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&t.servers, "turn", "", "TURN servers for the relay strategy, comma-separated RFC 7065 URIs: turn:host[:port][?transport=udp|tcp], turns:host[:port] (TLS); "+
		"without ?transport the agent tries UDP, then TCP, then TLS on 5349. Empty: no relay")
	fs.StringVar(&t.user, "turn-username", "", "TURN username: a static user, or an operator-issued TURN REST username (expiry:user)")
	fs.StringVar(&t.passFile, "turn-password-file", "", "file holding the TURN password (or the REST credential's password); kept out of flags and logs")
	fs.StringVar(&t.caFile, "turn-ca", "", "PEM file of the CA that signed the TURN server's TLS certificate (turns:); default: the system roots")
}

// relayConfig builds the relay configuration, or nil when --turn is empty.
func (t turnOptions) relayConfig() (*relay.Config, error) {
	uris := splitList(t.servers)
	if len(uris) == 0 {
		return nil, nil
	}
	cfg := &relay.Config{Username: t.user}
	for _, u := range uris {
		s, err := parseTURNURI(u)
		if err != nil {
			return nil, fmt.Errorf("--turn: %w", err)
		}
		cfg.Servers = append(cfg.Servers, s)
	}
	if t.user == "" || t.passFile == "" {
		return nil, errors.New("--turn needs --turn-username and --turn-password-file")
	}
	b, err := os.ReadFile(t.passFile)
	if err != nil {
		return nil, fmt.Errorf("--turn-password-file: %w", err)
	}
	if cfg.Password = strings.TrimSpace(string(b)); cfg.Password == "" {
		return nil, fmt.Errorf("--turn-password-file %s is empty", t.passFile)
	}
	if t.caFile != "" {
		pem, err := os.ReadFile(t.caFile)
		if err != nil {
			return nil, fmt.Errorf("--turn-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--turn-ca %s: no PEM certificate in it", t.caFile)
		}
		cfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return cfg, nil
}

// parseTURNURI reads an RFC 7065 TURN URI: turn:host[:port][?transport=udp|tcp]
// or turns:host[:port][?transport=tcp]. IPv6 hosts go in brackets.
func parseTURNURI(s string) (relay.Server, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || (scheme != "turn" && scheme != "turns") {
		return relay.Server{}, fmt.Errorf("%q: want turn:host[:port] or turns:host[:port]", s)
	}
	hostport, query, _ := strings.Cut(rest, "?")
	if strings.HasPrefix(hostport, "//") {
		return relay.Server{}, fmt.Errorf("%q: a TURN URI has no // (turn:host:port)", s)
	}
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	} else if strings.Count(hostport, ":") > 1 && !strings.HasPrefix(hostport, "[") {
		return relay.Server{}, fmt.Errorf("%q: put an IPv6 address in brackets", s)
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return relay.Server{}, fmt.Errorf("%q: no host", s)
	}
	transport := ""
	if query != "" {
		v, err := url.ParseQuery(query)
		if err != nil {
			return relay.Server{}, fmt.Errorf("%q: %w", s, err)
		}
		for k := range v {
			if k != "transport" {
				return relay.Server{}, fmt.Errorf("%q: unknown parameter %q (only transport)", s, k)
			}
		}
		switch transport = v.Get("transport"); transport {
		case "udp", "tcp":
		default:
			return relay.Server{}, fmt.Errorf("%q: transport %q is not udp or tcp", s, transport)
		}
	}
	if scheme == "turns" {
		if transport == "udp" {
			return relay.Server{}, fmt.Errorf("%q: turns: runs over TLS (TCP); DTLS is not supported", s)
		}
		transport = "tls"
		if port == "" {
			port = "5349"
		}
	}
	if port == "" {
		port = "3478"
	}
	srv := relay.Server{Addr: net.JoinHostPort(host, port), Transport: transport}
	if scheme == "turns" {
		srv.ServerName = host
	}
	return srv, nil
}
