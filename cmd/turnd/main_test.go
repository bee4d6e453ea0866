package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/p2pd-go/p2pd/internal/config"
)

// syncBuf is a bytes.Buffer safe for a process's stdout and stderr at once.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestHelpListsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, &out)
	if !errors.Is(err, config.ErrHelp) {
		t.Fatalf("err = %v, want ErrHelp", err)
	}
	for _, f := range []string{"listen", "port", "no-udp", "no-tcp", "sockets", "tls-port", "tls-cert", "tls-key", "realm",
		"users-file", "auth-secret", "auth-secret-file", "relay-ip", "relay-bind", "relay-min-port", "relay-max-port",
		"allow-peer", "tcp-idle", "max-tcp-conns", "max-allocations-per-user", "max-allocations", "max-bandwidth", "drain", "admin", "log-level", "log-format", "config"} {
		if !strings.Contains(out.String(), "--"+f+" ") && !strings.Contains(out.String(), "--"+f+"\n") {
			t.Errorf("--help does not list --%s", f)
		}
		env := "TURND_" + strings.ToUpper(strings.ReplaceAll(f, "-", "_"))
		if !strings.Contains(out.String(), env) {
			t.Errorf("--help does not name %s", env)
		}
	}
}

func TestBadConfigurationIsRefused(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("alice:pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badUsers := filepath.Join(dir, "bad")
	if err := os.WriteFile(badUsers, []byte("alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := filepath.Join(dir, "turnd.yaml")
	if err := os.WriteFile(yml, []byte("max-allocations: -1\nusers-file: "+users+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no credentials", nil, "no credentials"},
		{"bad users file", []string{"--users-file", badUsers}, "line 1"},
		{"missing users file", []string{"--users-file", filepath.Join(dir, "nope")}, "no such file"},
		{"bad allow-peer", []string{"--users-file", users, "--allow-peer", "10.0.0.0/99"}, "--allow-peer"},
		{"bad relay ip", []string{"--users-file", users, "--relay-ip", "nope"}, "--relay-ip"},
		{"port range", []string{"--users-file", users, "--relay-min-port", "5000", "--relay-max-port", "4000"}, "above"},
		{"bad port", []string{"--users-file", users, "--port", "70000"}, "--port"},
		{"tls half", []string{"--users-file", users, "--tls-cert", users}, "go together"},
		{"ipv6 relay bind", []string{"--users-file", users, "--relay-bind", "::1", "--listen", "127.0.0.1", "--port", "1"}, "IPv4 only"},
		{"yaml negative quota", []string{"--config", yml}, "negative"},
		{"unknown flag", []string{"--frobnicate"}, "frobnicate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, &out)
			if err == nil || !strings.Contains(err.Error()+out.String(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
