package nat

import (
	"context"
	"fmt"
	"go/build"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testbin"

	"github.com/p2pd-go/p2pd/internal/testenv"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/stun"
)

// labStund is stund running on a lab WAN host with two IPv4 and two IPv6
// addresses.
type labStund struct {
	lab  *natlab.Lab
	host *natlab.Host
	ip4  [2]netip.Addr
	ip6  [2]netip.Addr
}

func (s *labStund) primary() netip.AddrPort { return netip.AddrPortFrom(s.ip4[0], 3478) }

func buildStund(t testing.TB) string { return testbin.Build(t, "cmd/stund") }

func newLabStund(t testing.TB, extra ...string) *labStund {
	lab := natlab.New(t)
	addrs := lab.AllocWAN(2, 2)
	s := &labStund{lab: lab, ip4: [2]netip.Addr{addrs[0], addrs[1]}, ip6: [2]netip.Addr{addrs[2], addrs[3]}}
	s.host = lab.AddServer("stund", addrs...)
	args := []string{
		"--primary-ip4", s.ip4[0].String(), "--alternate-ip4", s.ip4[1].String(),
		"--primary-ip6", s.ip6[0].String(), "--alternate-ip6", s.ip6[1].String(),
		"--admin", "", "--log-level", "warn"}
	s.host.Start(t, buildStund(t), append(args, extra...)...)
	// Wait until it answers, asking from the server host itself.
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := stun.ExternalAddr(ctx, stun.ExternalConfig{Net: s.host.Net(), Servers: []netip.AddrPort{s.primary()}, Timeout: 300 * time.Millisecond})
		cancel()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("stund in the lab does not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReachable waits until host h gets a STUN answer from srv, so a
// verdict is never taken while the lab network is still settling. A
// UDP-blocking router never passes, so it is not waited for.
func waitReachable(t testing.TB, h *natlab.Host, b natlab.Behaviour, srv netip.AddrPort) {
	t.Helper()
	if b == natlab.UDPBlocked {
		return
	}
	var err error
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = stun.ExternalAddr(ctx, stun.ExternalConfig{Net: h.Net(), Servers: []netip.AddrPort{srv}, Timeout: 2 * time.Second})
		cancel()
		if err == nil {
			return
		}
	}
	t.Fatalf("lab host %s cannot reach %s: %v", h.Name(), srv, err)
}

func labConfig(s *labStund, h *natlab.Host) Config {
	return Config{Servers: []netip.AddrPort{s.primary()}, Net: h.Net(), RTO: stun.DefaultRTO, ReplyTimeout: 400 * time.Millisecond}
}

func checkTruth(t *testing.T, r Result, want natlab.Truth) {
	t.Helper()
	if int(r.Type) != want.NATType || string(r.Mapping) != string(want.Mapping) || string(r.Filtering) != string(want.Filtering) ||
		int(r.Delta.Type) != want.DeltaType || r.Delta.Value != want.DeltaValue {
		t.Errorf("verdict type %d mapping %s filtering %s delta %d/%d; truth type %d mapping %s filtering %s delta %d/%d",
			r.Type, r.Mapping, r.Filtering, r.Delta.Type, r.Delta.Value,
			want.NATType, want.Mapping, want.Filtering, want.DeltaType, want.DeltaValue)
	}
}

// TestLabProfile runs the profile from a host behind every lab NAT behaviour
// against stund on a WAN host; the verdict must equal the lab's truth.
func TestLabProfile(t *testing.T) {
	s := newLabStund(t)
	for _, b := range natlab.Behaviours() {
		t.Run(b.String(), func(t *testing.T) {
			h := s.lab.AddRouter("r"+fmt.Sprint(int(b)), b).AddHost("h" + fmt.Sprint(int(b)))
			waitReachable(t, h, b, s.primary())
			r, err := Profile(context.Background(), labConfig(s, h))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %+v", b, r)
			checkTruth(t, r, b.Truth())
			// Run it again: mappings left by the first run must not change the verdict.
			r, err = Profile(context.Background(), labConfig(s, h))
			if err != nil {
				t.Fatal(err)
			}
			checkTruth(t, r, b.Truth())
		})
	}
}

// TestLabProfileFirewall4 profiles hosts on public IPv4 addresses behind
// natlab's firewall routers (no translation, stateful filtering): the
// verdict names the filtering, so only an unfiltered host is open.
func TestLabProfileFirewall4(t *testing.T) {
	s := newLabStund(t)
	for _, b := range natlab.Behaviours() {
		t.Run(b.String(), func(t *testing.T) {
			h := s.lab.AddFirewall("fw"+fmt.Sprint(int(b)), b).AddHost("p" + fmt.Sprint(int(b)))
			waitReachable(t, h, b, s.primary())
			r, err := Profile(context.Background(), labConfig(s, h))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %+v", b, r)
			if b != natlab.UDPBlocked && r.External.Addr() != h.IP4() {
				t.Errorf("external %s, want the host's own %s", r.External, h.IP4())
			}
			checkTruth(t, r, b.Truth6())
		})
	}
}

// TestLabStundIPv6 checks stund's IPv6 side from an open host, including
// change requests between the two IPv6 addresses.
func TestLabStundIPv6(t *testing.T) {
	s := newLabStund(t)
	h := s.lab.AddRouter("open6", natlab.Open).AddHost("h6")
	if !h.IP6().IsValid() {
		t.Skip("open lab hosts have no IPv6 address")
	}
	pc, err := h.Net().ListenPacket(context.Background(), "udp6", netip.AddrPortFrom(h.IP6(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	c := stun.NewConn(pc, 50*time.Millisecond)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv := netip.AddrPortFrom(s.ip6[0], 3478)
	for _, change := range []uint32{0, stun.ChangePort, stun.ChangeIP | stun.ChangePort} {
		for _, classic := range []bool{false, true} {
			r, err := c.Do(ctx, stun.Request{Server: srv, Change: change, Classic: classic})
			if err != nil {
				t.Fatalf("change %d classic %v: %v", change, classic, err)
			}
			if r.Mapped != c.LocalAddr() || r.Other != netip.AddrPortFrom(s.ip6[1], 3479) {
				t.Errorf("change %d classic %v: mapped %s other %s", change, classic, r.Mapped, r.Other)
			}
		}
	}
}

func natBehaviourTool(t testing.TB) string {
	if p, err := exec.LookPath("stun-nat-behaviour"); err == nil {
		return p
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "stun-nat-behaviour")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return testenv.RequireTools(t, "stun-nat-behaviour")[0]
}

var (
	pionMapping   = regexp.MustCompile(`NAT mapping behavior: ([a-z -]+?)( \(no NAT\))?\n`)
	pionFiltering = regexp.MustCompile(`NAT filtering behavior: ([a-z -]+?)\n`)
)

// pionClass turns stun-nat-behaviour's words into a class.
func pionClass(re *regexp.Regexp, out string) string {
	m := re.FindStringSubmatch(out)
	if m == nil {
		return string(natlab.Unknown) // "inconclusive"
	}
	switch m[1] {
	case "inconclusive":
		return string(natlab.Unknown)
	case "endpoint independent":
		return string(natlab.EndpointIndependent)
	case "address dependent":
		return string(natlab.AddressDependent)
	case "address and port dependent":
		return string(natlab.AddressAndPortDependent)
	}
	return m[1]
}

// TestLabPionNATBehaviour runs pion's RFC 5780 client against stund from
// behind every lab NAT: it must report the lab's mapping and filtering.
func TestLabPionNATBehaviour(t *testing.T) {
	tool := natBehaviourTool(t)
	s := newLabStund(t)
	for _, b := range natlab.Behaviours() {
		t.Run(b.String(), func(t *testing.T) {
			h := s.lab.AddRouter("p"+fmt.Sprint(int(b)), b).AddHost("ph" + fmt.Sprint(int(b)))
			waitReachable(t, h, b, s.primary())
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := h.Command(ctx, tool, "-server", s.primary().String(), "-timeout", "1").CombinedOutput()
			if err != nil {
				t.Fatalf("stun-nat-behaviour: %v\n%s", err, out)
			}
			want := b.Truth()
			gotM, gotF := pionClass(pionMapping, string(out)), pionClass(pionFiltering, string(out))
			if gotM != string(want.Mapping) || gotF != string(want.Filtering) {
				t.Errorf("pion says mapping %s filtering %s; truth %s %s\n%s", gotM, gotF, want.Mapping, want.Filtering, out)
			}
		})
	}
}

// BenchmarkLabProfile20msRTT measures a whole profile, with the default
// RTO and reply timeout, from behind NATs whose WAN link adds 10 ms each way
// (20 ms RTT to stund). The verdict must still equal the truth.
//
// The loop profiles the same NAT back to back, far above what stund's
// default per-source rate limit allows, so the limit is raised here.
func BenchmarkLabProfile20msRTT(b *testing.B) {
	s := newLabStund(b, "--rate", "10000", "--burst", "10000")
	for _, nb := range []natlab.Behaviour{natlab.FullCone, natlab.PortRestrictedCone, natlab.SymmetricSequential} {
		b.Run(nb.String(), func(b *testing.B) {
			h := s.lab.AddRouter("slow"+fmt.Sprint(int(nb)), nb, natlab.Link{Delay: 10 * time.Millisecond}).AddHost("sh" + fmt.Sprint(int(nb)))
			waitReachable(b, h, nb, s.primary())
			cfg := labConfig(s, h)
			cfg.RTO, cfg.ReplyTimeout = stun.DefaultRTO, DefaultReplyTimeout
			want := nb.Truth()
			for b.Loop() {
				r, err := Profile(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				if int(r.Type) != want.NATType || int(r.Delta.Type) != want.DeltaType || r.Delta.Value != want.DeltaValue {
					b.Fatalf("verdict %+v, truth %+v", r, want)
				}
			}
		})
	}
}

// TestLabCoturnProfile runs the profile against coturn (STUN only, RFC 5780
// on two WAN addresses) from behind every lab NAT: the verdict must equal
// the lab's truth, as it does against stund.
func TestLabCoturnProfile(t *testing.T) {
	bin := testenv.RequireTools(t, "turnserver")[0]
	lab := natlab.New(t)
	addrs := lab.AllocWAN(2, 0)
	host := lab.AddServer("coturn", addrs...)
	host.Start(t, bin, "-n", "--listening-ip", addrs[0].String(), "--listening-ip", addrs[1].String(),
		"--listening-port", "3478", "--alt-listening-port", "3479", "--stun-only", "--no-tls", "--no-dtls",
		"--no-cli", "--log-file", "stdout", "--simple-log", "--pidfile", t.TempDir()+"/turnserver.pid")
	srv := netip.AddrPortFrom(addrs[0], 3478)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := stun.ExternalAddr(ctx, stun.ExternalConfig{Net: host.Net(), Servers: []netip.AddrPort{srv}, Timeout: 300 * time.Millisecond})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("coturn in the lab does not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, b := range natlab.Behaviours() {
		t.Run(b.String(), func(t *testing.T) {
			h := lab.AddRouter("c"+fmt.Sprint(int(b)), b).AddHost("ch" + fmt.Sprint(int(b)))
			waitReachable(t, h, b, srv)
			r, err := Profile(context.Background(), Config{Servers: []netip.AddrPort{srv}, Net: h.Net(), RTO: stun.DefaultRTO, ReplyTimeout: 400 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			checkTruth(t, r, b.Truth())
		})
	}
}
