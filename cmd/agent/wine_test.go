package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testbin"
	"github.com/p2pd-go/p2pd/internal/winetest"
	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/peeraddr"
)

// TestWindowsAgentUnderWine runs the Windows build of the agent under Wine
// against a stund and an mqttd on loopback: --help, then the daemon until
// it answers /p2p/addr, `agent.exe version` as a client of it, and an ECHO
// over a pipe to itself (listener, Noise handshake, pipe), with the node key
// created in the Windows state dir. See internal/winetest for when it skips.
func TestWindowsAgentUnderWine(t *testing.T) {
	wine := winetest.New(t)
	exe := testbin.BuildFor(t, "cmd/agent", "windows", "amd64")

	help, err := wine.Command(exe, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("agent.exe --help: %v\n%s", err, help)
	}
	localAppData := wine.Getenv(t, "LOCALAPPDATA")
	stateDir := localAppData + `\p2pd`
	for _, want := range []string{"--state-dir", "--stun", "--brokers", `default "` + strings.ReplaceAll(stateDir, `\`, `\\`) + `"`} {
		if !bytes.Contains(help, []byte(want)) {
			t.Errorf("agent.exe --help lacks %s:\n%s", want, help)
		}
	}

	stun := startServer(t, testbin.Build(t, "cmd/stund"), func(port int) []string {
		return []string{"--primary-ip4", "127.0.0.1", "--alternate-ip4", "127.0.0.2",
			"--port", strconv.Itoa(port), "--alt-port", strconv.Itoa(port + 1), "--admin", ""}
	}, "stund serving")
	broker := startServer(t, testbin.Build(t, "cmd/mqttd"), func(port int) []string {
		return []string{"--listen", "127.0.0.1:" + strconv.Itoa(port), "--ws-listen", "", "--admin", "", "--allow-anonymous"}
	}, "mqttd serving")

	api, nodePort := freePort(t), freePort(t)
	var logs testbin.Output
	agent := wine.Command(exe, "--api", "127.0.0.1:"+strconv.Itoa(api), "--port", strconv.Itoa(nodePort),
		"--stun", fmt.Sprintf("127.0.0.1:%d,127.0.0.2:%d", stun, stun),
		"--brokers", "tcp://127.0.0.1:"+strconv.Itoa(broker))
	agent.Stdout, agent.Stderr = &logs, &logs
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	t.Cleanup(func() {
		_ = agent.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("agent.exe output:\n%s", logs.String())
		}
	})
	base := "http://127.0.0.1:" + strconv.Itoa(api)

	var addr struct {
		Addr   string `json:"addr"`
		NodeID string `json:"node_id"`
		Error  int    `json:"error"`
	}
	deadline := time.Now().Add(90 * time.Second) // Wine starts slowly
	for {
		if err := getJSON(base+"/p2p/addr", &addr); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("agent.exe exited before answering /p2p/addr: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("agent.exe did not answer /p2p/addr")
		}
	}
	a, err := peeraddr.Parse(addr.Addr)
	if err != nil || addr.Error != 0 {
		t.Fatalf("/p2p/addr: %+v: %v", addr, err)
	}
	if len(a.IPv4) == 0 || a.IPv4[0].Port != uint16(nodePort) || a.NodeID != addr.NodeID {
		t.Errorf("address %s: want an IPv4 block with port %d and node id %s", addr.Addr, nodePort, addr.NodeID)
	}

	// The key is in %LOCALAPPDATA%\p2pd and is the node's identity. (Its
	// Unix mode here is whatever Wine derives from the DACL, so it is read
	// as a file; the DACL check is pkg/identity's test, run under Wine too.)
	b, err := os.ReadFile(filepath.Join(wine.HostPath(t, stateDir), identity.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.ParseKeyFile(b)
	if err != nil {
		t.Fatalf("node key in %s: %v", stateDir, err)
	}
	if id.NodeID() != addr.NodeID {
		t.Errorf("key in %s is node %s, the agent says %s", stateDir, id.NodeID(), addr.NodeID)
	}

	version := wine.Command(exe, "version")
	version.Env = append(version.Env, "AGENT_API_URL="+base)
	out, err := version.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(`"title": "p2pd"`)) {
		t.Errorf("agent.exe version: %v\n%s", err, out)
	}

	var echo struct {
		Data  string `json:"data"`
		Error int    `json:"error"`
	}
	for _, path := range []string{"/p2p/open/me/self", "/p2p/send/me/ECHO%20hi%20from%20windows"} {
		if err := getJSON(base+path, &struct{}{}); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if err := getJSON(base+"/p2p/recv/me/timeout/10", &echo); err != nil || echo.Data != "hi from windows" {
		t.Fatalf("ECHO over a pipe to itself: %+v, %v", echo, err)
	}
}

// getJSON decodes a 200 answer from the agent's API.
func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// startServer starts bin with args for a random port until it logs ready
// (a port taken by someone else makes it exit: try another), and stops it
// at cleanup. It returns the port.
func startServer(t *testing.T, bin string, args func(port int) []string, ready string) int {
	t.Helper()
	for range 10 {
		port := 20000 + 2*rand.IntN(6000)
		var out testbin.Output
		cmd := exec.Command(bin, args(port)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		for up := false; !up; {
			select {
			case <-exited:
				up = true // and not ready: retry on another port
				t.Logf("%s on port %d: %s", filepath.Base(bin), port, out.String())
				cmd = nil
			case <-time.After(50 * time.Millisecond):
				up = strings.Contains(out.String(), ready)
			}
		}
		if cmd == nil {
			continue
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			<-exited
		})
		return port
	}
	t.Fatalf("could not start %s", bin)
	return 0
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
