package main

import (
	"strings"
	"testing"

	"github.com/p2pd-go/p2pd/pkg/relay"
)

func TestParseTURNURI(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want relay.Server
		err  string
	}{
		{in: "turn:127.0.0.1", want: relay.Server{Addr: "127.0.0.1:3478"}},
		{in: "turn:turn.example.org:3480?transport=tcp", want: relay.Server{Addr: "turn.example.org:3480", Transport: "tcp"}},
		{in: "turn:[2001:db8::1]:3478?transport=udp", want: relay.Server{Addr: "[2001:db8::1]:3478", Transport: "udp"}},
		{in: "turns:turn.example.org", want: relay.Server{Addr: "turn.example.org:5349", Transport: "tls", ServerName: "turn.example.org"}},
		{in: "stun:1.2.3.4", err: "want turn:"},
		{in: "turn://1.2.3.4", err: "no //"},
		{in: "turn:2001:db8::1", err: "brackets"},
		{in: "turn:1.2.3.4?transport=sctp", err: "not udp or tcp"},
		{in: "turn:1.2.3.4?foo=bar", err: "unknown parameter"},
		{in: "turns:1.2.3.4?transport=udp", err: "DTLS"},
		{in: "turn:", err: "no host"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseTURNURI(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func FuzzParseTURNURI(f *testing.F) {
	for _, s := range []string{"turn:127.0.0.1", "turns:h:5349?transport=tcp", "turn:[::1]:1?transport=udp", "turn:?", "turn:[", "turn:%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		srv, err := parseTURNURI(s)
		if err != nil {
			return
		}
		if srv.Addr == "" || !strings.Contains(srv.Addr, ":") {
			t.Fatalf("%q parsed to an address without a port: %+v", s, srv)
		}
	})
}
