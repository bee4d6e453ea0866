package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

var programs = []string{"stund", "turnd", "mqttd", "agent"}

// adminPorts are the services the test brings up and their admin ports
// inside the container.
var adminPorts = map[string]string{"stund": "9101", "turnd": "9102", "mqttd": "9103", "agent1": "9104", "agent2": "9104", "agent3": "9104"}

// agents are the demo agents: agent1 and agent2 share the stack network,
// agent3 is alone on the other one.
var agents = []string{"agent1", "agent2", "agent3"}

// stack is one compose project under test.
type stack struct {
	t       *testing.T
	root    string
	env     []string
	project string
}

func (s *stack) compose(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	full := append([]string{"compose", "-f", "deploy/docker-compose.yml", "-p", s.project}, args...)
	return command(ctx, s.root, s.env, nil, "docker", full...)
}

func (s *stack) mustCompose(args ...string) string {
	s.t.Helper()
	out, err := s.compose(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// agent runs the agent binary inside a demo agent's container as a client
// of that agent's loopback-only REST API and decodes its JSON answer.
func (s *stack) agent(service string, v any, args ...string) {
	s.t.Helper()
	out := s.mustCompose(append([]string{"exec", "-T", service, "/agent"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		s.t.Fatalf("agent %v in %s: %v\n%s", args, service, err, out)
	}
}

// published is the host address of a service's published container port
// ("9101", or "3478/udp").
func (s *stack) published(service, port string) string {
	s.t.Helper()
	args := []string{"port", service, port}
	if p, proto, ok := strings.Cut(port, "/"); ok {
		args = []string{"port", "--protocol", proto, service, p}
	}
	out := strings.TrimSpace(s.mustCompose(args...))
	if _, err := netip.ParseAddrPort(out); err != nil {
		s.t.Fatalf("compose port %s %s: %q: %v", service, port, out, err)
	}
	return out
}

func TestCompose(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireTools(t, "promtool", "stun-nat-behaviour")
	root := repoRoot(t)
	id := strconv.Itoa(os.Getpid()) + strconv.Itoa(rand.IntN(1000))
	tag := "test-" + id
	mustRun(t, root, nil, "scripts/images.sh", tag)
	t.Cleanup(func() {
		for _, p := range programs {
			command(context.Background(), root, nil, nil, "docker", "image", "rm", "p2pd/"+p+":"+tag)
		}
	})
	t.Run("images", func(t *testing.T) { checkImages(t, tag) })

	secrets := t.TempDir()
	netA, netB := freeSubnets(t)
	relay := freeUDPPorts(t)
	s := &stack{t: t, root: root, project: "p2pdtest" + id, env: []string{
		"P2PD_TAG=" + tag, "P2PD_SECRETS_DIR=" + secrets, "P2PD_NET_A=" + netA, "P2PD_NET_B=" + netB,
		"P2PD_RELAY_MIN_PORT=" + strconv.Itoa(relay), "P2PD_RELAY_MAX_PORT=" + strconv.Itoa(relay+relayPorts-1),
		// Empty host ports: Docker picks free ones (other tests use the defaults).
		"P2PD_STUND_ADMIN_PORT=", "P2PD_TURND_ADMIN_PORT=", "P2PD_MQTTD_ADMIN_PORT=", "P2PD_AGENT1_ADMIN_PORT=",
		"P2PD_AGENT2_ADMIN_PORT=", "P2PD_AGENT3_ADMIN_PORT=", "P2PD_MQTT_PORT=", "P2PD_MQTT_WS_PORT=", "P2PD_TURN_PORT=",
		"P2PD_PROMETHEUS_PORT=", "P2PD_GRAFANA_PORT=",
		"P2PD_PUBLIC_IP4=192.0.2.10", "P2PD_PUBLIC_IP4_ALT=192.0.2.11", // only for the override's config check
	}}
	mustRun(t, root, s.env, "scripts/compose.sh", "secrets")
	t.Run("production override is valid", func(t *testing.T) {
		out := s.mustCompose("-f", "deploy/docker-compose.prod.yml", "config", "--format", "json")
		var cfg struct {
			Services map[string]struct {
				NetworkMode string            `json:"network_mode"`
				Environment map[string]string `json:"environment"`
			}
		}
		if err := json.Unmarshal([]byte(out), &cfg); err != nil {
			t.Fatal(err)
		}
		for _, svc := range []string{"stund", "turnd"} {
			if c := cfg.Services[svc]; c.NetworkMode != "host" || !strings.HasPrefix(c.Environment[strings.ToUpper(svc)+"_ADMIN"], "127.0.0.1:") {
				t.Errorf("%s: network %q, admin %q", svc, c.NetworkMode, c.Environment[strings.ToUpper(svc)+"_ADMIN"])
			}
		}
	})
	t.Cleanup(func() { s.compose("--profile", "demo", "down", "-v", "--remove-orphans") }) // on failure too

	// Prometheus and Grafana cannot be pulled here: up everything else.
	if out, err := s.compose(append([]string{"up", "-d", "--wait", "stund", "turnd", "mqttd"}, agents...)...); err != nil {
		logs, _ := s.compose("--profile", "demo", "logs", "--no-color", "--tail", "30")
		t.Fatalf("%v\nlogs:\n%s", out, logs)
	}

	t.Run("healthy", func(t *testing.T) {
		out := s.mustCompose("ps", "--format", "json")
		seen := map[string]bool{}
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var c struct{ Service, State, Health string }
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				t.Fatalf("compose ps: %v: %s", err, sc.Text())
			}
			if c.State != "running" || c.Health != "healthy" {
				t.Errorf("%s: state %q health %q", c.Service, c.State, c.Health)
			}
			seen[c.Service] = true
		}
		for svc := range adminPorts {
			if !seen[svc] {
				t.Errorf("%s is not running", svc)
			}
		}
	})

	addrs := map[string]string{}
	t.Run("agents learn addresses and NAT from stund", func(t *testing.T) {
		for _, svc := range agents {
			subnet := netip.MustParsePrefix(netA + ".0/24")
			if svc == "agent3" { // through stund's second address
				subnet = netip.MustParsePrefix(netB + ".0/24")
			}
			var ifs ifsReply
			s.agent(svc, &ifs, "ifs")
			nic, ext, natType := ifs.first()
			if !subnet.Contains(ext) || ext != nic {
				t.Errorf("%s: external %v, NIC %v; want the NIC address in %v (no NAT on the stack network)", svc, ext, nic, subnet)
			}
			if natType != 1 {
				t.Errorf("%s: NAT type %d, want 1 (open internet)", svc, natType)
			}
			var a struct {
				Error int    `json:"error"`
				Addr  string `json:"addr"`
			}
			s.agent(svc, &a, "addr")
			if a.Error != 0 || !strings.Contains(a.Addr, ","+ext.String()+",") {
				t.Errorf("%s: peer address %q lacks %v", svc, a.Addr, ext)
			}
			addrs[svc] = a.Addr
		}
	})

	t.Run("stund answers change requests from its second address", func(t *testing.T) {
		// The host sits on the stack network, so an RFC 5780 client there
		// sees stund's replies unchanged.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := command(ctx, "", nil, nil, "stun-nat-behaviour", "-server", netA+".3:3478")
		if err != nil {
			t.Fatal(err)
		}
		// (Mapping comes out address dependent: the host has an address on
		// each of the stack's networks.)
		for _, want := range []string{"Response from " + netB + ".3:3479", "Response from " + netB + ".3:3478", "NAT filtering behavior: endpoint independent"} {
			if !strings.Contains(out, want) {
				t.Errorf("stun-nat-behaviour output lacks %q:\n%s", want, out)
			}
		}
	})

	// Before the connects: the relay strategy needs the standing allocations.
	t.Run("agents hold a standing relay allocation on turnd", func(t *testing.T) {
		for _, svc := range agents {
			url := "http://" + s.published(svc, "9104") + "/metrics"
			var v float64
			for range 150 { // the allocation is made in the background after start-up
				_, fams := scrape(t, url)
				if v, _ = value(fams, "agent_relay_allocation_active", nil); v == 1 {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if v != 1 {
				t.Errorf("%s: agent_relay_allocation_active = %v, want 1", svc, v)
			}
		}
		_, fams := scrape(t, "http://"+s.published("turnd", "9102")+"/metrics")
		if v, _ := value(fams, "turnd_allocations_active", nil); v < float64(len(agents)) {
			t.Errorf("turnd_allocations_active = %v, want >= %d (one per demo agent)", v, len(agents))
		}
	})

	t.Run("agents on one network connect directly and echo", func(t *testing.T) {
		s.connectAndEcho(t, "demo", addrs["agent1"], "direct")
	})

	t.Run("an isolated agent is reached by signalling through mqttd and relaying through turnd", func(t *testing.T) {
		// Direct and reverse connects cannot cross the isolated bridges: the
		// relay strategy wins after the peers swapped CON and TURN messages
		// over mqttd.
		s.connectAndEcho(t, "isolated", addrs["agent3"], "relay")
		for _, c := range []struct {
			svc, metric, typ string
		}{{"agent2", "agent_signal_sent_total", "TURN"}, {"agent3", "agent_signal_received_total", "TURN"}, {"agent3", "agent_signal_sent_total", "TURN"}} {
			_, fams := scrape(t, "http://"+s.published(c.svc, "9104")+"/metrics")
			if v, _ := value(fams, c.metric, map[string]string{"type": c.typ}); v < 1 {
				t.Errorf("%s: %s{type=%q} = %v, want >= 1", c.svc, c.metric, c.typ, v)
			}
		}
		_, fams := scrape(t, "http://"+s.published("mqttd", "9103")+"/metrics")
		if v, _ := value(fams, "mqttd_messages_received_total", nil); v < 2 {
			t.Errorf("mqttd_messages_received_total = %v, want >= 2 (the agents' signals)", v)
		}
	})

	t.Run("turnd relays within the stack network only", func(t *testing.T) { checkRelay(t, s, secrets, netA, relay) })

	t.Run("metrics", func(t *testing.T) {
		mustRun(t, root, nil, "promtool", "check", "config", "deploy/prometheus.yml")
		pages := map[string]map[string]float64{}
		for svc, port := range adminPorts {
			url := "http://" + s.published(svc, port) + "/metrics"
			raw, fams := scrape(t, url)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, err := command(ctx, "", nil, strings.NewReader(string(raw)), "promtool", "check", "metrics")
			cancel()
			if err != nil {
				t.Errorf("%s: promtool check metrics: %v", svc, err)
			} else if strings.TrimSpace(out) != "" {
				t.Errorf("%s: promtool check metrics: %s", svc, out)
			}
			pages[svc] = map[string]float64{}
			for _, m := range []string{"mqttd_clients_connected", "mqttd_subscriptions", "agent_signal_brokers_connected",
				"stund_responses_total", "agent_inbound_pipes_total", "agent_pipe_messages_sent_total", "turnd_allocations_active"} {
				if v, ok := value(fams, m, nil); ok {
					pages[svc][m] = v
				}
			}
		}
		// Both agents hold a session with mqttd (their signalling path) and
		// stund answered their address and NAT queries.
		if v := pages["mqttd"]["mqttd_clients_connected"]; v != float64(len(agents)) {
			t.Errorf("mqttd_clients_connected = %v, want %d (the demo agents)", v, len(agents))
		}
		if v := pages["mqttd"]["mqttd_subscriptions"]; v < float64(len(agents)) {
			t.Errorf("mqttd_subscriptions = %v, want >= %d", v, len(agents))
		}
		for _, a := range agents {
			if v := pages[a]["agent_signal_brokers_connected"]; v != 1 {
				t.Errorf("%s: agent_signal_brokers_connected = %v, want 1", a, v)
			}
		}
		if v := pages["agent1"]["agent_inbound_pipes_total"]; v < 1 {
			t.Errorf("agent1: agent_inbound_pipes_total = %v, want >= 1 (agent2's pipe)", v)
		}
		if v := pages["agent2"]["agent_pipe_messages_sent_total"]; v < 1 {
			t.Errorf("agent2: agent_pipe_messages_sent_total = %v, want >= 1", v)
		}
		if v := pages["stund"]["stund_responses_total"]; v < 4 {
			t.Errorf("stund_responses_total = %v, want >= 4 (two servers per agent)", v)
		}
		if _, ok := pages["turnd"]["turnd_allocations_active"]; !ok {
			t.Errorf("turnd exports no turnd_allocations_active")
		}
	})

	t.Run("down leaves nothing", func(t *testing.T) {
		s.mustCompose("--profile", "demo", "down", "-v", "--remove-orphans")
		label := "label=com.docker.compose.project=" + s.project
		for _, kind := range []string{"container", "network", "volume"} {
			args := []string{kind, "ls", "-q", "--filter", label}
			if kind == "container" {
				args = []string{"ps", "-aq", "--filter", label}
			}
			if out := strings.TrimSpace(mustRun(t, "", nil, "docker", args...)); out != "" {
				t.Errorf("after down -v, %ss of %s remain: %s", kind, s.project, out)
			}
		}
	})
}

// connectAndEcho has agent2 open a pipe named name to addr, checks the
// winning strategy, and has the peer echo a message.
func (s *stack) connectAndEcho(t *testing.T, name, addr, strategy string) {
	if addr == "" {
		t.Fatal("no peer address")
	}
	var open struct {
		Error    int    `json:"error"`
		Msg      string `json:"msg"`
		Strategy string `json:"strategy"`
	}
	s.agent("agent2", &open, "open", name, addr)
	if open.Error != 0 || open.Strategy != strategy {
		t.Fatalf("open: error %d %q, strategy %q, want %q", open.Error, open.Msg, open.Strategy, strategy)
	}
	var sent struct{ Error int }
	s.agent("agent2", &sent, "send", name, "ECHO hello over "+strategy)
	var got struct {
		Error int    `json:"error"`
		Data  string `json:"data"`
	}
	s.agent("agent2", &got, "recv", name, "30")
	if sent.Error != 0 || got.Error != 0 || got.Data != "hello over "+strategy {
		t.Fatalf("echo: sent %d, got %+v", sent.Error, got)
	}
}

// ifsReply is the part of /p2p/ifs the test reads.
type ifsReply struct {
	Error int `json:"error"`
	Ifs   []struct {
		NAT struct {
			Type int `json:"type"`
		} `json:"nat"`
		RP map[string][]struct {
			NICIPs []struct{ IP string } `json:"nic_ips"`
			ExtIPs []struct{ IP string } `json:"ext_ips"`
		} `json:"rp"`
	} `json:"ifs"`
}

// first returns the first IPv4 route's NIC and external address and the NAT type.
func (r ifsReply) first() (nic, ext netip.Addr, natType int) {
	for _, i := range r.Ifs {
		for _, rp := range i.RP["2"] {
			if len(rp.NICIPs) > 0 && len(rp.ExtIPs) > 0 {
				nic, _ = netip.ParseAddr(rp.NICIPs[0].IP)
				ext, _ = netip.ParseAddr(rp.ExtIPs[0].IP)
				return nic, ext, i.NAT.Type
			}
		}
	}
	return
}

// checkImages: FROM scratch (only our files), non-root, no shell, < 30 MB.
func checkImages(t *testing.T, tag string) {
	for _, p := range programs {
		t.Run(p, func(t *testing.T) {
			img := "p2pd/" + p + ":" + tag
			var cfg []struct {
				Size   int64
				Config struct {
					User       string
					Entrypoint []string
				}
			}
			if err := json.Unmarshal([]byte(mustRun(t, "", nil, "docker", "image", "inspect", img)), &cfg); err != nil || len(cfg) != 1 {
				t.Fatalf("inspect %s: %v", img, err)
			}
			c := cfg[0]
			if c.Size >= 30e6 {
				t.Errorf("%s is %d bytes, want < 30 MB", img, c.Size)
			}
			if c.Config.User != "65532:65532" {
				t.Errorf("%s runs as %q, want 65532:65532", img, c.Config.User)
			}
			if len(c.Config.Entrypoint) != 1 || c.Config.Entrypoint[0] != "/"+p {
				t.Errorf("%s entrypoint %v", img, c.Config.Entrypoint)
			}
			// The filesystem holds our files and nothing else (no shell, no libc).
			cid := strings.TrimSpace(mustRun(t, "", nil, "docker", "create", img))
			defer command(context.Background(), "", nil, nil, "docker", "rm", cid)
			list := mustRun(t, "", nil, "bash", "-c", "docker export "+cid+" | tar -t")
			allowed := map[string]bool{p: true, "healthcheck": true, "var/": true, "var/lib/": true, "var/lib/p2pd/": true,
				// Docker's own mount points in every exported container:
				".dockerenv": true, "dev/": true, "dev/console": true, "dev/pts/": true, "dev/shm/": true, "etc/": true,
				"etc/hostname": true, "etc/hosts": true, "etc/mtab": true, "etc/resolv.conf": true, "proc/": true, "sys/": true}
			for _, f := range strings.Fields(list) {
				if !allowed[f] {
					t.Errorf("%s contains %s", img, f)
				}
			}
		})
	}
}

// freeSubnets picks two /24s in 172.30.0.0/16 no Docker network uses.
func freeSubnets(t *testing.T) (a, b string) {
	ids := strings.Fields(mustRun(t, "", nil, "docker", "network", "ls", "-q"))
	var used []netip.Prefix
	if len(ids) > 0 {
		out := mustRun(t, "", nil, "docker", append([]string{"network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"}, ids...)...)
		for _, f := range strings.Fields(out) {
			if p, err := netip.ParsePrefix(f); err == nil {
				used = append(used, p)
			}
		}
	}
	free := func(n int) bool {
		p := netip.MustParsePrefix(fmt.Sprintf("172.30.%d.0/24", n))
		for _, u := range used {
			if u.Overlaps(p) {
				return false
			}
		}
		return true
	}
	start := 100 + rand.IntN(140)
	for i := range 140 {
		n := 100 + (start-100+i)%140
		if free(n) && free(n+1) {
			return fmt.Sprintf("172.30.%d", n), fmt.Sprintf("172.30.%d", n+1)
		}
	}
	t.Fatal("deploy: no two free /24s in 172.30.100.0-172.30.240.0")
	return
}

// relayPorts is the size of turnd's relay range in the test: one standing
// allocation per demo agent, the test's own, and room to spare. pion picks
// relay ports at random with a bounded number of tries, so a range that is
// mostly in use fails allocations now and then (508): keep it mostly free.
const relayPorts = 16

// freeUDPPorts returns p such that UDP ports p to p+relayPorts-1 are free on
// loopback, below the kernel's ephemeral range.
func freeUDPPorts(t *testing.T) int {
	for range 100 {
		p := 20000 + rand.IntN(12000)
		ok := true
		for port := p; port < p+relayPorts; port++ {
			c, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("deploy: no free UDP port pair")
	return 0
}
