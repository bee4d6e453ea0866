package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/p2pd-go/p2pd/internal/config"
)

func TestHelpListsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, &out)
	if !errors.Is(err, config.ErrHelp) {
		t.Fatalf("got %v", err)
	}
	for _, f := range []string{"--api", "--admin", "--port", "--stun", "--brokers", "--broker-username", "--broker-password-file",
		"--state-dir", "--interfaces", "--ntp", "--no-portmap", "--no-migrate", "--no-nat-profile", "--start-timeout", "AGENT_STUN", "agent help",
		"--api-token", "--api-allow-null-origin", "--broker-ca", "--version", "--punch"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("--help lacks %s", f)
		}
	}
}

func TestBadConfig(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--stun", "nowhere"}, `--stun "nowhere"`},
		{[]string{"--broker-password-file", "/nonexistent/pw"}, "--broker-password-file"},
		{[]string{"--port", "70000"}, "port 70000 out of range"},
		{[]string{"--log-level", "loud"}, "bad log level"},
		{[]string{"--api", "0.0.0.0:12333"}, "is not loopback"},
		{[]string{"--api", "127.0.0.1"}, "--api"},
		{[]string{"--brokers", "ftp://127.0.0.1:21"}, `scheme "ftp"`},
		{[]string{"--brokers", "tcp://127.0.0.1"}, "want scheme://host:port"},
		{[]string{"--brokers", ""}, "at least one broker"},
		{[]string{"--broker-ca", "/nonexistent/ca.pem"}, "--broker-ca"},
		{[]string{"--broker-ca", "/etc/hostname"}, "no PEM certificate"},
		{[]string{"--stun", "no-such-host.invalid:3478"}, `--stun "no-such-host.invalid:3478"`},
		{[]string{"--stun", "localhost:99999"}, "bad port"},
		{[]string{"--ntp", "[::1"}, "clock: server"},
		{[]string{"--punch", "sctp"}, `--punch: "sctp" is not tcp or udp`},
		{[]string{"--punch", ""}, "--punch: name tcp, udp or both"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			err := run(context.Background(), tt.args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestSTUNHostNames(t *testing.T) {
	got, err := stunServers(context.Background(), []string{"localhost:3478", "192.0.2.1:3479"})
	if err != nil {
		t.Fatal(err)
	}
	var loop bool
	for _, ap := range got {
		loop = loop || (ap.Addr().IsLoopback() && ap.Port() == 3478)
	}
	if !loop || got[len(got)-1].String() != "192.0.2.1:3479" {
		t.Errorf("got %v", got)
	}
}

func TestVersionFlag(t *testing.T) {
	if err := run(context.Background(), []string{"--version"}, &bytes.Buffer{}); !errors.Is(err, config.ErrHelp) {
		t.Errorf("--version: %v", err)
	}
}

func TestClientErrors(t *testing.T) {
	var out, errb bytes.Buffer
	err := client(context.Background(), []string{"open", "onlyname"}, strings.NewReader(""), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "usage: agent open [--strategies") {
		t.Errorf("missing argument: %v", err)
	}
	err = client(context.Background(), []string{"addr", "--api-url", "http://127.0.0.1:1"}, strings.NewReader(""), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "is the agent running?") {
		t.Errorf("no agent: %v", err)
	}
	out.Reset()
	if err := client(context.Background(), []string{"help"}, strings.NewReader(""), &out, &errb); err != nil || !strings.Contains(out.String(), "agent send NAME TEXT") {
		t.Errorf("help: %v %s", err, out.String())
	}
}
