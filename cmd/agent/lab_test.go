package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testbin"
	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/api"
	"github.com/p2pd-go/p2pd/pkg/natlab"
)

// apiOn serves the API of a lab agent on a host loopback port.
func apiOn(t *testing.T, a *agenttest.Agent) string {
	t.Helper()
	s, err := api.New(api.Config{Backend: a.Agent, Listen: []string{"127.0.0.1:0"}, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	go func() {
		for p := range a.Inbound {
			s.Inbound(p)
		}
	}()
	return "http://" + s.Addrs()[0].String()
}

// TestConnect: `agent connect` carries a 10 MiB file between agents on two
// lab hosts (one behind a NAT) intact, and `agent connect --accept`
// receives it.
func TestConnect(t *testing.T) {
	lab := natlab.New(t)
	st := agenttest.NewStack(t, lab, agenttest.MQTTD)
	a := agenttest.StartAgent(t, lab.AddRouter("isp", natlab.Open).AddHost("a"), st)
	b := agenttest.StartAgent(t, lab.AddRouter("home", natlab.PortRestrictedCone).AddHost("b"), st)
	aAPI, bAPI := apiOn(t, a), apiOn(t, b)
	bin := testbin.Build(t, "cmd/agent")

	data := make([]byte, 10<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	recv := exec.CommandContext(ctx, bin, "connect", "--accept", "--timeout", "60s", "--api-url", bAPI)
	var got, recvErr bytes.Buffer
	recv.Stdout, recv.Stderr = &got, &recvErr
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "10MiB")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	send := exec.CommandContext(ctx, bin, "connect", "--api-url", aAPI, b.Addr(t))
	var sendOut, sendErr bytes.Buffer
	send.Stdin, send.Stdout, send.Stderr = in, &sendOut, &sendErr
	if err := send.Run(); err != nil {
		t.Fatalf("sender: %v\n%s", err, sendErr.String())
	}
	if err := recv.Wait(); err != nil {
		t.Fatalf("receiver: %v\n%s", err, recvErr.String())
	}
	if got.Len() != len(data) || sha256.Sum256(got.Bytes()) != sha256.Sum256(data) {
		t.Fatalf("received %d bytes, want %d intact; sender said %q, receiver %q", got.Len(), len(data), sendErr.String(), recvErr.String())
	}
	if !strings.Contains(sendErr.String(), b.ID()) || !strings.Contains(recvErr.String(), a.ID()) {
		t.Errorf("progress lines lack the peers: %q / %q", sendErr.String(), recvErr.String())
	}
	// The sender closed its connection once everything was sent.
	out, err := exec.CommandContext(ctx, bin, "cons", "--api-url", aAPI).Output()
	if err != nil || strings.Contains(string(out), "connect-") {
		t.Errorf("sender's connection still open: %v %s", err, out)
	}

	t.Run("empty recv prints its error once", func(t *testing.T) {
		if out, err := exec.CommandContext(ctx, bin, "open", "--api-url", aAPI, "e", "self").CombinedOutput(); err != nil {
			t.Fatalf("open: %v %s", err, out)
		}
		cmd := exec.CommandContext(ctx, bin, "recv", "--api-url", aAPI, "e", "0.1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err == nil {
			t.Fatal("empty recv exited 0")
		}
		if stdout.Len() != 0 || strings.Count(stderr.String(), "nothing received") != 1 {
			t.Errorf("stdout %q, stderr %q: want the error once, on stderr", stdout.String(), stderr.String())
		}
	})
}

// TestStartErrors: a broker that cannot be reached is named with its URL
// and the cause.
func TestStartErrors(t *testing.T) {
	lab := natlab.New(t)
	st := agenttest.NewStack(t, lab, agenttest.MQTTD)
	h := lab.AddRouter("isp", natlab.Open).AddHost("h")
	bin := testbin.Build(t, "cmd/agent")
	dead := "tcp://" + st.A1.String() + ":1999"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := h.Command(ctx, bin, "--state-dir", t.TempDir(), "--api", "127.0.0.1:0", "--no-portmap", "--start-timeout", "3s",
		"--stun", st.STUN[0].String()+","+st.STUN[1].String(), "--brokers", dead)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("agent started without a broker: %s", out)
	}
	if !strings.Contains(string(out), dead+": ") || !strings.Contains(string(out), "connection refused") {
		t.Errorf("error does not name the broker and cause: %s", out)
	}
}

// TestNAT: `agent nat` inside a lab host reports the lab NAT's type,
// classes and external address, with progress on stderr.
func TestNAT(t *testing.T) {
	lab := natlab.New(t)
	st := agenttest.NewStack(t, lab, agenttest.MQTTD)
	r := lab.AddRouter("home", natlab.PortRestrictedCone)
	h := r.AddHost("h")
	bin := testbin.Build(t, "cmd/agent")
	stun := st.STUN[0].String() + "," + st.STUN[1].String()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := h.Command(ctx, bin, "nat", "--json", "--no-portmap", "--stun", stun)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("agent nat: %v\n%s", err, stderr.String())
	}
	var rep struct {
		Interfaces []struct {
			Name      string   `json:"name"`
			Default   bool     `json:"is_default"`
			External  []string `json:"ext_ips"`
			Reachable bool     `json:"udp_reachable"`
			NAT       struct {
				Type      int    `json:"type"`
				Mapping   string `json:"mapping"`
				Filtering string `json:"filtering"`
			} `json:"nat"`
			UDP []struct {
				LatencyMS float64 `json:"latency_ms"`
				Error     string  `json:"error"`
			} `json:"stun_udp"`
		} `json:"interfaces"`
		TCP []struct {
			LatencyMS float64 `json:"latency_ms"`
			Error     string  `json:"error"`
		} `json:"stun_tcp"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(rep.Interfaces) != 1 {
		t.Fatalf("interfaces: %s", out)
	}
	i := rep.Interfaces[0]
	if i.NAT.Type != 5 || i.NAT.Mapping != "endpoint-independent" || i.NAT.Filtering != "address-and-port-dependent" {
		t.Errorf("NAT %+v, want type 5 (port-restricted cone)", i.NAT)
	}
	if len(i.External) != 1 || i.External[0] != r.WANAddr().String() || !i.Reachable || !i.Default {
		t.Errorf("interface %+v, want external %s, reachable, default", i, r.WANAddr())
	}
	if len(i.UDP) != 2 || i.UDP[0].Error != "" || len(rep.TCP) != 2 || rep.TCP[0].Error != "" {
		t.Errorf("STUN results: %s", out)
	}
	if !strings.Contains(stderr.String(), "agent nat: eth0: NAT type") {
		t.Errorf("no progress on stderr: %q", stderr.String())
	}
}

// TestNAT6: on a host with global IPv6 behind a port-restricted IPv6
// firewall, `agent nat` reports the IPv6 profile beside the IPv4 one, in
// JSON and in text.
func TestNAT6(t *testing.T) {
	lab := natlab.New(t)
	st := agenttest.NewStack6(t, lab, agenttest.MQTTD)
	h := lab.AddRouter6("home6", natlab.PortRestrictedCone).AddHost("h")
	bin := testbin.Build(t, "cmd/agent")
	var servers []string
	for _, s := range st.STUN {
		servers = append(servers, s.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(args ...string) string {
		cmd := h.Command(ctx, bin, append([]string{"nat", "--no-portmap", "--stun", strings.Join(servers, ",")}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("agent nat: %v\n%s", err, stderr.String())
		}
		return string(out)
	}
	out := run("--json")
	var rep struct {
		Interfaces []struct {
			NAT struct {
				Type int `json:"type"`
			} `json:"nat"`
			NAT6 *struct {
				Type      int    `json:"type"`
				Mapping   string `json:"mapping"`
				Filtering string `json:"filtering"`
			} `json:"nat6"`
			NAT6Error string `json:"nat6_error"`
		} `json:"interfaces"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(rep.Interfaces) != 1 {
		t.Fatalf("interfaces: %s", out)
	}
	i := rep.Interfaces[0]
	if i.NAT.Type != 5 || i.NAT6 == nil || i.NAT6.Type != 5 || i.NAT6.Mapping != "endpoint-independent" || i.NAT6.Filtering != "address-and-port-dependent" {
		t.Errorf("NAT %+v, NAT6 %+v (%s): want type 5 for both, IPv6 filtering address-and-port-dependent", i.NAT, i.NAT6, i.NAT6Error)
	}
	text := run()
	t.Logf("agent nat:\n%s", text)
	for _, want := range []string{"  NAT type:                5 restrict port\n", "  IPv6 NAT type:           5 restrict port\n", "  IPv6 RFC 4787 filtering: address-and-port-dependent\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}
