// Package agenttest runs p2pd's private stack (stund and MQTT brokers) and
// agents inside NAT-lab hosts, for tests of the agent and what sits on it.
package agenttest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testbin"
	"github.com/p2pd-go/p2pd/internal/testenv"
	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/netif"
	"github.com/p2pd-go/p2pd/pkg/relay"
	"github.com/p2pd-go/p2pd/pkg/signal"
	"github.com/prometheus/client_golang/prometheus"
)

// Stack is the private server side of a lab: stund on two addresses and
// one or two MQTT brokers.
type Stack struct {
	Srv     *natlab.Host
	A1, A2  netip.Addr
	A6      [2]netip.Addr // stund's IPv6 addresses (NewStack6)
	STUN    []netip.AddrPort
	Brokers []signal.Broker
	Procs   []*natlab.Proc
	// TURN is turnd's address once StartTURN ran; agents then get a relay.
	TURN     netip.AddrPort
	TURNProc *natlab.Proc
	turnArgs []string
}

// TURN credentials of the lab's turnd.
const (
	TURNUser     = "lab"
	TURNPassword = "lab-secret"
)

// StartTURN runs turnd on the stack's first address (port 3490, relays
// 40000-40999), with one static user. Agents started afterwards use it.
func (s *Stack) StartTURN(t *testing.T) {
	t.Helper()
	users := filepath.Join(t.TempDir(), "turn-users")
	if err := os.WriteFile(users, []byte(TURNUser+":"+TURNPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.TURN = netip.AddrPortFrom(s.A1, 3490)
	s.turnArgs = []string{"--listen", s.A1.String(), "--port", "3490", "--relay-bind", s.A1.String(),
		"--relay-min-port", "40000", "--relay-max-port", "40999", "--users-file", users, "--admin", "", "--drain", "0s"}
	s.runTURN(t)
}

// RestartTURN kills turnd (every allocation dies with it) and starts it again.
func (s *Stack) RestartTURN(t *testing.T) {
	t.Helper()
	s.TURNProc.Kill()
	s.runTURN(t)
}

func (s *Stack) runTURN(t *testing.T) {
	t.Helper()
	s.TURNProc = s.Srv.Start(t, testbin.Build(t, "cmd/turnd"), s.turnArgs...)
	WaitTCP(t, s.Srv, s.TURN)
}

// RelayConfig is the relay configuration for agents of this stack (nil
// before StartTURN).
func (s *Stack) RelayConfig() *relay.Config {
	if !s.TURN.IsValid() {
		return nil
	}
	return &relay.Config{Servers: []relay.Server{{Addr: s.TURN.String()}}, Username: TURNUser, Password: TURNPassword}
}

// Broker kinds a stack can run.
const (
	MQTTD     = "mqttd"
	Mosquitto = "mosquitto"
)

func NewStack(t testing.TB, lab *natlab.Lab, brokers ...string) *Stack {
	t.Helper()
	return newStack(t, lab, false, brokers)
}

// NewStack6 is NewStack whose stund also serves two IPv6 addresses, so
// agents behind natlab's v6 routers resolve and profile their IPv6 routes.
// The brokers stay on IPv4.
func NewStack6(t testing.TB, lab *natlab.Lab, brokers ...string) *Stack {
	t.Helper()
	return newStack(t, lab, true, brokers)
}

func newStack(t testing.TB, lab *natlab.Lab, v6 bool, brokers []string) *Stack {
	t.Helper()
	n6 := 0
	if v6 {
		n6 = 2
	}
	addrs := lab.AllocWAN(2, n6)
	s := &Stack{Srv: lab.AddServer("stack", addrs...), A1: addrs[0], A2: addrs[1]}
	stund := testbin.Build(t, "cmd/stund")
	args := []string{"--primary-ip4", s.A1.String(), "--alternate-ip4", s.A2.String(), "--ntp", "--admin", ""}
	s.STUN = []netip.AddrPort{netip.AddrPortFrom(s.A1, 3478), netip.AddrPortFrom(s.A2, 3478)}
	if v6 {
		s.A6 = [2]netip.Addr{addrs[2], addrs[3]}
		args = append(args, "--primary-ip6", s.A6[0].String(), "--alternate-ip6", s.A6[1].String())
		s.STUN = append(s.STUN, netip.AddrPortFrom(s.A6[0], 3478), netip.AddrPortFrom(s.A6[1], 3478))
	}
	s.Srv.Start(t, stund, args...)
	for i, kind := range brokers {
		addr := netip.AddrPortFrom(addrs[i%2], uint16(1883+i))
		switch kind {
		case MQTTD:
			bin := testbin.Build(t, "cmd/mqttd")
			s.Procs = append(s.Procs, s.Srv.Start(t, bin, "--listen", addr.String(), "--ws-listen", "", "--admin", "", "--allow-anonymous"))
		case Mosquitto:
			testenv.RequireTools(t, "mosquitto")
			conf := filepath.Join(t.TempDir(), "mosquitto.conf")
			body := fmt.Sprintf("listener %d %s\nallow_anonymous true\npersistence false\n", addr.Port(), addr.Addr())
			if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			s.Procs = append(s.Procs, s.Srv.Start(t, "mosquitto", "-c", conf))
		}
		s.Brokers = append(s.Brokers, signal.Broker{URL: "tcp://" + addr.String()})
		WaitTCP(t, s.Srv, addr)
	}
	WaitTCP(t, s.Srv, s.STUN[0])
	return s
}

// WaitTCP waits until something listens on addr.
func WaitTCP(t testing.TB, h *natlab.Host, addr netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := h.Net().DialContext(context.Background(), "tcp", addr.String())
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

// Agent is an agent running in a lab host.
type Agent struct {
	*agent.Agent
	Reg     *prometheus.Registry
	Inbound chan *agent.Pipe
}

// StartAgent runs an agent inside lab host h against the stack.
func StartAgent(t testing.TB, h *natlab.Host, s *Stack) *Agent {
	t.Helper()
	return StartAgentWith(t, h, s, nil)
}

// StartAgentWith is StartAgent with a hook that may change the config.
func StartAgentWith(t testing.TB, h *natlab.Host, s *Stack, tune func(*agent.Config)) *Agent {
	t.Helper()
	var nics []netif.NIC
	if err := h.Do(func() error {
		var err error
		nics, err = netif.List(netif.Options{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	la := &Agent{Reg: prometheus.NewRegistry(), Inbound: make(chan *agent.Pipe, 8)}
	cfg := agent.Config{
		Identity: id, Net: h.Net(), NICs: nics, STUNServers: s.STUN, Brokers: s.Brokers,
		OnPipe: func(p *agent.Pipe) { la.Inbound <- p }, Registry: la.Reg,
		DirectTimeout: 2 * time.Second, ReverseTimeout: 6 * time.Second,
		Relay: s.RelayConfig(),
	}
	if tune != nil {
		tune(&cfg)
	}
	la.Agent, err = agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Start(context.Background()); err != nil {
		t.Fatalf("agent on %s: %v", h.Name(), err)
	}
	t.Cleanup(la.Close)
	return la
}

// Addr is the agent's peer address as text.
func (la *Agent) Addr(t testing.TB) string {
	a, err := la.Address()
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}
