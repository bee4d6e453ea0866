package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newTestLoader(env map[string]string) (*Loader, *string, *int, *string) {
	l := New("prog", "PROG", "prog does things")
	l.SetGetenv(func(k string) string { return env[k] })
	listen := l.Flags().String("listen-addr", "127.0.0.1:1", "where to listen")
	max := l.Flags().Int("max-clients", 10, "client limit")
	users := l.Flags().String("users", "", "comma-separated users")
	return l, listen, max, users
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("listen-addr: 10.0.0.1:5\nmax-clients: 77\nusers: [a, b]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantListen string
		wantMax    int
		wantUsers  string
	}{
		{"defaults", nil, nil, "127.0.0.1:1", 10, ""},
		{"file", []string{"--config", file}, nil, "10.0.0.1:5", 77, "a,b"},
		{"env beats file", []string{"--config", file}, map[string]string{"PROG_MAX_CLIENTS": "5"}, "10.0.0.1:5", 5, "a,b"},
		{"flag beats env", []string{"--config", file, "--max-clients", "3"}, map[string]string{"PROG_MAX_CLIENTS": "5"}, "10.0.0.1:5", 3, "a,b"},
		{"config from env", nil, map[string]string{"PROG_CONFIG": file}, "10.0.0.1:5", 77, "a,b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, listen, max, users := newTestLoader(tt.env)
			if err := l.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if *listen != tt.wantListen || *max != tt.wantMax || *users != tt.wantUsers {
				t.Errorf("got %q %d %q, want %q %d %q", *listen, *max, *users, tt.wantListen, tt.wantMax, tt.wantUsers)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown key", []string{"--config", write("u.yaml", "max-client: 3\n")}, nil, `unknown key "max-client"`},
		{"bad value in file", []string{"--config", write("b.yaml", "max-clients: lots\n")}, nil, `key "max-clients"`},
		{"bad yaml", []string{"--config", write("y.yaml", "max-clients: [\n")}, nil, "y.yaml"},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, "nope.yaml"},
		{"bad env", nil, map[string]string{"PROG_MAX_CLIENTS": "x"}, "PROG_MAX_CLIENTS"},
		{"mapping value", []string{"--config", write("m.yaml", "users: {a: 1}\n")}, nil, "mapping"},
		{"positional", []string{"extra"}, nil, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _, _, _ := newTestLoader(tt.env)
			l.Flags().SetOutput(&bytes.Buffer{})
			err := l.Parse(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestHelpListsEnv(t *testing.T) {
	l, _, _, _ := newTestLoader(nil)
	var out bytes.Buffer
	l.Flags().SetOutput(&out)
	if err := l.Parse([]string{"--help"}); !errors.Is(err, ErrHelp) {
		t.Fatalf("got %v, want ErrHelp", err)
	}
	for _, want := range []string{"prog does things", "--max-clients", "env PROG_MAX_CLIENTS", `default "10"`, "--config"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

// TestVersion: --version stops with ErrVersion (which matches ErrHelp);
// PROG_VERSION in the environment is not a setting and changes nothing.
func TestVersion(t *testing.T) {
	l, _, _, _ := newTestLoader(map[string]string{"PROG_VERSION": "1.2"})
	if err := l.Parse(nil); err != nil {
		t.Fatalf("PROG_VERSION in the environment: %v", err)
	}
	l, _, _, _ = newTestLoader(nil)
	if err := l.Parse([]string{"--version"}); !errors.Is(err, ErrVersion) || !errors.Is(err, ErrHelp) {
		t.Fatalf("--version: %v", err)
	}
}
