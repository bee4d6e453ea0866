package api

import (
	"io"
	"net"
	"net/url"
	"regexp"
	"testing"
	"time"
)

// FuzzOptions feeds arbitrary request paths to the option parser: it must
// return options or an error, and accepted regexes must compile.
func FuzzOptions(f *testing.F) {
	f.Add("/p2p/recv/c1/msg_p/%5Eping/addr_p/10%5C.0/timeout/2.5")
	f.Add("/p2p/recv/c1/timeout")
	f.Add("/p2p/recv/%zz")
	f.Fuzz(func(t *testing.T, path string) {
		parts, err := splitPath(path, 3)
		if err != nil {
			return
		}
		o, err := parsePairs(parts)
		if err != nil {
			return
		}
		if o.timeout < 0 {
			t.Fatalf("negative timeout from %q", path)
		}
		_, _ = regexp.Compile(o.sub.Msg)
	})
}

// FuzzOrigin: the origin rule accepts only exact loopback origins.
func FuzzOrigin(f *testing.F) {
	for _, s := range []string{"http://localhost:8000", "null", "http://[::1]:1", "http://127.0.0.1", "http://evil.example", "http://localhost:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, origin string) {
		if !loopbackOrigin(origin) {
			return
		}
		u, err := url.Parse(origin)
		if err != nil || (u.Hostname() != "localhost" && u.Hostname() != "127.0.0.1" && u.Hostname() != "::1") {
			t.Fatalf("accepted %q", origin)
		}
	})
}

// FuzzSniff feeds arbitrary request heads to the connection sniffer: it
// must answer, hand the connection on or close it, never hang or panic.
func FuzzSniff(f *testing.F) {
	f.Add([]byte("GET /p2p/pipe/con_name HTTP/1.1\r\nOrigin: null\r\n\r\nECHO hi"))
	f.Add([]byte("GET /p2p/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
	f.Add([]byte("GET /%zz HTTP/1.1\r\n\r\n"))
	f.Add([]byte("\r\n\r\n"))
	s, err := New(Config{Backend: nilBackend{}})
	if err != nil {
		f.Fatal(err)
	}
	l := &sniffListener{s: s, conns: make(chan net.Conn), done: make(chan struct{})}
	close(l.done) // connections handed on are closed at once
	f.Fuzz(func(t *testing.T, head []byte) {
		client, server := net.Pipe()
		defer client.Close()
		finished := make(chan struct{})
		go func() { l.sniff(server); close(finished) }()
		_ = client.SetDeadline(time.Now().Add(2 * time.Second))
		go func() { _, _ = client.Write(head); _ = client.Close() }()
		_, _ = io.Copy(io.Discard, client)
		select {
		case <-finished:
		case <-time.After(sniffTimeout + 5*time.Second):
			t.Fatalf("sniff hangs on %q", head)
		}
	})
}
