package main

import (
	"bytes"
	"context"
	"errors"
	"go/build"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testbin"

	"github.com/p2pd-go/p2pd/internal/config"
	"github.com/p2pd-go/p2pd/internal/testenv"
	"github.com/p2pd-go/p2pd/pkg/stun"
)

func TestHelpListsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, &out)
	if !errors.Is(err, config.ErrHelp) {
		t.Fatalf("got %v, want ErrHelp", err)
	}
	for _, f := range []string{"primary-ip4", "alternate-ip4", "primary-ip6", "alternate-ip6", "port", "alt-port",
		"no-udp", "no-tcp", "software", "rate", "burst", "sockets", "tcp-idle", "max-tcp-conns", "ntp", "ntp-port",
		"admin", "log-level", "log-format", "config"} {
		env := "STUND_" + strings.ToUpper(strings.ReplaceAll(f, "-", "_"))
		if !strings.Contains(out.String(), "--"+f+" ") && !strings.Contains(out.String(), "--"+f+"\n") {
			t.Errorf("--help misses --%s", f)
		}
		if !strings.Contains(out.String(), env) {
			t.Errorf("--help misses %s", env)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--primary-ip4", "not-an-ip"},
		{"--port", "70000"},
		{"--rate", "-1"},
		{"--primary-ip4", "127.0.0.1", "--alternate-ip4", "127.0.0.1"},
		{"--primary-ip4", "", "--primary-ip6", ""},
		{"--log-level", "loud"},
		{"stray"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := run(ctx, append(args, "--admin", ""), io.Discard); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// stund is a stund process started as a user would start it.
type stund struct {
	cmd    *exec.Cmd
	port   uint16
	admin  string
	stderr *syncBuffer
	exited chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func buildStund(t *testing.T) string { return testbin.Build(t, "cmd/stund") }

func freeTCPPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startStund starts bin on random free ports and waits for /healthz; the
// process gets SIGTERM at cleanup.
func startStund(t *testing.T, bin string, args ...string) *stund {
	t.Helper()
	for range 20 {
		s, busy := tryStund(t, bin, args)
		if s != nil {
			return s
		}
		if !busy {
			break
		}
	}
	t.Fatal("could not start stund")
	return nil
}

func tryStund(t *testing.T, bin string, args []string) (*stund, bool) {
	p := uint16(20000 + rand.IntN(12000))
	s := &stund{port: p, admin: freeTCPPort(t), stderr: &syncBuffer{}, exited: make(chan error, 1)}
	full := []string{"--port", strconv.Itoa(int(p)), "--alt-port", strconv.Itoa(int(p) + 1), "--admin", s.admin}
	for _, a := range args {
		full = append(full, strings.ReplaceAll(a, "{ntp-port}", strconv.Itoa(int(p)+2)))
	}
	s.cmd = exec.Command(bin, full...)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.exited:
			if strings.Contains(s.stderr.String(), "address already in use") {
				return nil, true
			}
			t.Fatalf("stund exited (%v): %s", err, s.stderr)
		default:
		}
		if resp, err := http.Get("http://" + s.admin + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Cleanup(func() { s.stop(t) })
				return s, false
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	t.Fatalf("stund did not become healthy: %s", s.stderr)
	return nil, false
}

// stop sends SIGTERM and returns the exit error (nil for a clean stop).
func (s *stund) stop(t *testing.T) error {
	if s.cmd.ProcessState != nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		s.exited <- err
		return err
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		err := <-s.exited
		s.exited <- err
		t.Errorf("stund ignored SIGTERM")
		return err
	}
}

func (s *stund) addr(ip string, alt bool) netip.AddrPort {
	p := s.port
	if alt {
		p++
	}
	return netip.AddrPortFrom(netip.MustParseAddr(ip), p)
}

func has6() bool {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// TestStundAsUser starts the binary on 127.0.0.1, 127.0.0.2 and ::1 and
// checks classic and modern clients over UDP and TCP, change requests,
// metrics, and a clean stop on SIGTERM.
func TestStundAsUser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	args := []string{"--primary-ip4", "127.0.0.1", "--alternate-ip4", "127.0.0.2", "--ntp", "--ntp-port", "{ntp-port}"}
	v6 := has6()
	if v6 {
		args = append(args, "--primary-ip6", "::1")
	}
	s := startStund(t, buildStund(t), args...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	type probe struct {
		name    string
		network string
		server  netip.AddrPort
		change  uint32
		classic bool
		from    netip.AddrPort
		other   netip.AddrPort
		wantErr bool
	}
	probes := []probe{
		{"modern", "udp4", s.addr("127.0.0.1", false), 0, false, s.addr("127.0.0.1", false), s.addr("127.0.0.2", true), false},
		{"classic", "udp4", s.addr("127.0.0.1", false), 0, true, s.addr("127.0.0.1", false), s.addr("127.0.0.2", true), false},
		{"modern change both", "udp4", s.addr("127.0.0.1", false), stun.ChangeIP | stun.ChangePort, false, s.addr("127.0.0.2", true), s.addr("127.0.0.2", true), false},
		{"classic change port", "udp4", s.addr("127.0.0.2", false), stun.ChangePort, true, s.addr("127.0.0.2", true), s.addr("127.0.0.1", true), false},
	}
	if v6 {
		probes = append(probes,
			probe{"ipv6 modern", "udp6", s.addr("::1", false), 0, false, s.addr("::1", false), netip.AddrPort{}, false},
			probe{"ipv6 classic", "udp6", s.addr("::1", false), 0, true, s.addr("::1", false), netip.AddrPort{}, false},
			probe{"ipv6 change refused", "udp6", s.addr("::1", false), stun.ChangeIP, false, netip.AddrPort{}, netip.AddrPort{}, true},
		)
	}
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			local := "127.0.0.1:0"
			if p.network == "udp6" {
				local = "[::1]:0"
			}
			pc, err := net.ListenPacket(p.network, local)
			if err != nil {
				t.Fatal(err)
			}
			c := stun.NewConn(pc, 50*time.Millisecond)
			defer c.Close()
			r, err := c.Do(ctx, stun.Request{Server: p.server, Change: p.change, Classic: p.classic})
			if p.wantErr {
				var er *stun.ErrorResponse
				if !errors.As(err, &er) {
					t.Fatalf("got %v, want an error response", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Mapped != c.LocalAddr() || r.From != p.from || r.Other != p.other {
				t.Errorf("mapped %s from %s other %s; want %s, %s, %s", r.Mapped, r.From, r.Other, c.LocalAddr(), p.from, p.other)
			}
		})
	}
	t.Run("tcp", func(t *testing.T) {
		servers := []netip.AddrPort{s.addr("127.0.0.1", false), s.addr("127.0.0.2", true)}
		if v6 {
			servers = append(servers, s.addr("::1", false))
		}
		for _, srv := range servers {
			for _, classic := range []bool{false, true} {
				r, err := stun.BindTCP(ctx, nil, stun.Request{Server: srv, Classic: classic})
				if err != nil {
					t.Fatalf("%s classic=%v: %v", srv, classic, err)
				}
				if r.Origin != srv || r.Mapped != r.Local {
					t.Errorf("%s: origin %s mapped %s", srv, r.Origin, r.Mapped)
				}
			}
		}
	})
	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + s.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, want := range []string{
			`stund_requests_total\{family="ipv4",kind="binding_classic",transport="udp"\} [1-9]`,
			`stund_requests_total\{family="ipv4",kind="change",transport="udp"\} [1-9]`,
			`stund_requests_total\{family="ipv4",kind="binding",transport="tcp"\} [1-9]`,
			`stund_request_duration_seconds_bucket`,
			`stund_malformed_total\{transport="udp"\} 0`,
		} {
			if !regexp.MustCompile(want).Match(body) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
	if err := s.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v; stderr:\n%s", err, s.stderr)
	}
}

// natBehaviour finds pion's stun-nat-behaviour (PATH or GOPATH/bin).
func natBehaviour(t *testing.T) string {
	if p, err := exec.LookPath("stun-nat-behaviour"); err == nil {
		return p
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "stun-nat-behaviour")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return testenv.RequireTools(t, "stun-nat-behaviour")[0]
}

// TestPionNATBehaviour runs pion's RFC 5780 client against stund on
// 127.0.0.1/127.0.0.2: loopback has no NAT, so it must report endpoint-
// independent mapping and filtering.
func TestPionNATBehaviour(t *testing.T) {
	if testing.Short() {
		t.Skip("runs stun-nat-behaviour")
	}
	tool := natBehaviour(t)
	s := startStund(t, buildStund(t), "--primary-ip4", "127.0.0.1", "--alternate-ip4", "127.0.0.2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, "-server", s.addr("127.0.0.1", false).String(), "-timeout", "2").CombinedOutput()
	if err != nil {
		t.Fatalf("stun-nat-behaviour: %v\n%s", err, out)
	}
	for _, want := range []string{"NAT mapping behavior: endpoint independent", "NAT filtering behavior: endpoint independent"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
