package api

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/p2pd-go/p2pd/pkg/identity"
)

// loopbackHost reports whether a Host header names this machine (DNS
// rebinding protection: a page on attacker.example that resolves to
// 127.0.0.1 still sends Host: attacker.example).
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// originAllowed is the origin rule:
//   - no Origin header: allowed (curl, scripts; browsers are held back by
//     the Sec-Fetch-Site check in guard);
//   - "null": only with Config.AllowNullOrigin;
//   - http(s)://localhost, http(s)://127.0.0.1 or http(s)://[::1], with or
//     without a port: allowed (pages served from this machine);
//   - anything else: refused.
func (s *Server) originAllowed(origin string) bool {
	switch origin {
	case "":
		return true
	case "null":
		return s.cfg.AllowNullOrigin
	}
	return loopbackOrigin(origin)
}

func loopbackOrigin(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return false
	}
	// An origin is exactly scheme://host[:port]; reject anything that only
	// parses to one (e.g. a trailing dot or an empty port).
	if origin != u.Scheme+"://"+u.Host {
		return false
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
			return false
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return false
	}
	switch u.Hostname() {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	return false
}

// allowedHeaders are the request headers a page may send (listed: the
// wildcard "*" does not cover Authorization).
const allowedHeaders = "Authorization, Content-Type, X-Requested-With"

// preflight answers a CORS preflight from an allowed origin for every
// method the API serves. Browsers send Access-Control-Request-Headers only
// when the request has non-simple headers, so that one is not required.
func preflight(h http.Header, r *http.Request) {
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
	h.Set("Access-Control-Allow-Headers", allowedHeaders)
	h.Set("Access-Control-Max-Age", "600")
	if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		h.Set("Access-Control-Allow-Private-Network", "true")
	}
}

// tokenOK checks the bearer token when one is configured.
func (s *Server) tokenOK(r *http.Request) bool {
	return checkToken(s.cfg.Token, r.Header.Get("Authorization"), r.URL.Query().Get("token"))
}

func checkToken(want, authorization, query string) bool {
	if want == "" {
		return true
	}
	got := query
	if v, ok := strings.CutPrefix(authorization, "Bearer "); ok {
		got = strings.TrimSpace(v)
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// TokenFile is the token's file name in the agent's state directory.
const TokenFile = "api-token"

// LoadOrCreateToken reads the API token from path, creating it (32 random
// bytes as hex) if it does not exist, readable only by this user (0600 on
// Unix, an owner-only access list on Windows, as the node key). A token
// file others can read is refused: the token would protect nothing.
func LoadOrCreateToken(path string) (string, error) {
	tok, err := ReadToken(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("api: token: %w", err)
	}
	tok = hex.EncodeToString(b)
	if err := identity.WritePrivate(filepath.Dir(path), filepath.Base(path), []byte(tok+"\n")); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process made it meanwhile
			return ReadToken(path)
		}
		return "", fmt.Errorf("api: token: %w", err)
	}
	return tok, nil
}

// ReadToken reads an existing token file, refusing one that others may
// read, or that is empty.
func ReadToken(path string) (string, error) {
	b, err := identity.ReadPrivate(path, 4096)
	if err != nil {
		return "", fmt.Errorf("api: token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("api: token file %s is empty", path)
	}
	return tok, nil
}
