package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/mqttbroker"
)

// TestMain lets the test binary act as mqttd for the signal test.
func TestMain(m *testing.M) {
	if os.Getenv("MQTTD_TEST_RUN_MAIN") == "1" {
		os.Args = append([]string{"mqttd"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestHelpListsEveryFlag(t *testing.T) {
	s := &settings{broker: mqttbroker.Config{Limits: mqttbroker.DefaultLimits()}}
	cf := loader(s)
	var buf bytes.Buffer
	cf.PrintUsage(&buf)
	help := buf.String()
	n := 0
	cf.Flags().VisitAll(func(f *flag.Flag) {
		n++
		// --version is a command-line action, with no environment variable.
		if !strings.Contains(help, "--"+f.Name) || (f.Name != "version" && !strings.Contains(help, cf.EnvName(f.Name))) {
			t.Errorf("--help lacks --%s or %s", f.Name, cf.EnvName(f.Name))
		}
		if f.Usage == "" {
			t.Errorf("--%s has no usage text", f.Name)
		}
	})
	if n < 25 || !strings.Contains(help, "mqttd passwd") {
		t.Errorf("help looks incomplete (%d flags):\n%s", n, help)
	}
}

func TestParseSources(t *testing.T) {
	yaml := filepath.Join(t.TempDir(), "mqttd.yaml")
	if err := os.WriteFile(yaml, []byte("publish-rate: 7\nmax-clients: 9\nmax-packet-size: 2048\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MQTTD_MAX_CLIENTS", "5")
	for _, tc := range []struct {
		name    string
		args    []string
		check   func(*settings) error
		wantErr bool
	}{
		{"defaults", nil, func(s *settings) error {
			if s.broker.TCP != ":1883" || s.broker.WS != ":8083" || s.broker.TLS != "" || s.admin != "127.0.0.1:9103" {
				return fmt.Errorf("listeners %q %q %q admin %q", s.broker.TCP, s.broker.WS, s.broker.TLS, s.admin)
			}
			if s.broker.AllowAnonymous || s.broker.Limits.MaxClients != 5 {
				return fmt.Errorf("anonymous %v max clients %d", s.broker.AllowAnonymous, s.broker.Limits.MaxClients)
			}
			return nil
		}, false},
		{"yaml under env and flags", []string{"--config", yaml, "--publish-rate", "3"}, func(s *settings) error {
			l := s.broker.Limits
			if l.PublishRate != 3 || l.MaxClients != 5 || l.MaxPacketSize != 2048 {
				return fmt.Errorf("rate %v clients %d packet %d", l.PublishRate, l.MaxClients, l.MaxPacketSize)
			}
			return nil
		}, false},
		{"tls listener kept with a cert", []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}, func(s *settings) error {
			if s.broker.TLS != ":8883" {
				return fmt.Errorf("tls listen %q", s.broker.TLS)
			}
			return nil
		}, false},
		{"inflight out of range", []string{"--max-inflight", "70000"}, nil, true},
		{"receive maximum zero", []string{"--receive-maximum", "0"}, nil, true},
		{"queue bound zero", []string{"--max-queued", "0"}, nil, true},
		{"queue bytes negative", []string{"--max-queued-bytes", "-1"}, nil, true},
		{"queue bounds", []string{"--max-queued", "50", "--max-queued-bytes", "4096"}, func(s *settings) error {
			if l := s.broker.Limits; l.MaxQueued != 50 || l.MaxQueuedBytes != 4096 {
				return fmt.Errorf("queued %d bytes %d", l.MaxQueued, l.MaxQueuedBytes)
			}
			return nil
		}, false},
		{"stray argument", []string{"serve"}, nil, true},
		{"bad duration", []string{"--session-expiry", "soon"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parse(tc.args)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parse(%q) error %v, wantErr %v", tc.args, err, tc.wantErr)
			}
			if err == nil && tc.check != nil {
				if err := tc.check(s); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestPasswdCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	var stderr bytes.Buffer
	if err := passwd([]string{"--admin", "--cost", "4", path, "root"}, strings.NewReader("pw\n"), &stderr); err != nil {
		t.Fatal(err)
	}
	users, err := mqttbroker.LoadUsers(path)
	if err != nil || !users["root"].Admin {
		t.Fatalf("users %v, %v", users, err)
	}
	data, _ := os.ReadFile(path)
	if bytes.Contains(data, []byte("pw\n")) {
		t.Fatal("the users file holds the plain password")
	}
	for _, args := range [][]string{{path}, {"--delete", path, "nobody"}, {path, "bad:name"}} {
		if err := passwd(args, strings.NewReader("pw\n"), &stderr); err == nil {
			t.Errorf("passwd %q succeeded", args)
		}
	}
	if err := passwd([]string{"--delete", path, "root"}, strings.NewReader(""), &stderr); err != nil {
		t.Fatal(err)
	}
}

// TestStopsOnSIGTERM runs mqttd (this test binary acting as main), checks
// it serves, sends SIGTERM and expects a clean exit.
func TestStopsOnSIGTERM(t *testing.T) {
	cmd, tcp, log := startMqttd(t)
	c, err := net.Dial("tcp", tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// MQTT 3.1.1 CONNECT, clean session, anonymous, client id "t".
	_, _ = c.Write([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 1, 't'})
	ack := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK %x, %v", ack, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("mqttd exit: %v", err)
	}
	if !strings.Contains(log.String(), `"msg":"mqttd stopping"`) {
		t.Errorf("no \"mqttd stopping\" log line:\n%s", log.String())
	}
}
