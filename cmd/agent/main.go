// Command agent runs a p2pd agent: it learns its interfaces, external
// addresses and NAT, publishes a peer address, signals peers over MQTT,
// opens authenticated pipes to them and serves the local REST API. With a
// subcommand (addr, open, send, ...) it is a client of a running agent's API.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/p2pd-go/p2pd/internal/adminhttp"
	"github.com/p2pd-go/p2pd/internal/config"
	"github.com/p2pd-go/p2pd/internal/logx"
	"github.com/p2pd-go/p2pd/internal/version"
	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/api"
	"github.com/p2pd-go/p2pd/pkg/identity"
	"github.com/p2pd-go/p2pd/pkg/netif"
	psignal "github.com/p2pd-go/p2pd/pkg/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := os.Args[1:]
	var err error
	if len(args) > 0 && isCommand(args[0]) {
		err = client(ctx, args, os.Stdin, os.Stdout, os.Stderr)
	} else {
		if len(args) > 0 && args[0] == "run" {
			args = args[1:]
		}
		err = run(ctx, args, os.Stderr)
	}
	if err != nil && !errors.Is(err, config.ErrHelp) {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

type options struct {
	api, admin, stun, brokers, brokerUser, brokerPassFile string
	brokerCA                                              string
	stateDir, interfaces, ntp, punch                      string
	port                                                  int
	noPortMap, noNATProfile, noMigrate                    bool
	apiToken, allowNullOrigin                             bool
	startTimeout                                          time.Duration
	turn                                                  turnOptions
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cl := config.New("agent", "AGENT", "agent "+version.Version+": p2pd agent - direct peer-to-peer connections through NATs, with a local REST API.\n\n"+
		"Run it with no subcommand (or `agent run`) to start the daemon. Client commands talk to a\nrunning agent's API: "+strings.Join(commandNames(), ", ")+" (see `agent help`).")
	fs := cl.Flags()
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.api, "api", "127.0.0.1:12333,[::1]:12333", "REST API listen addresses (loopback only)")
	fs.StringVar(&o.admin, "admin", "127.0.0.1:9104", "admin HTTP address for /metrics and /healthz, for scraping (empty: off); separate from the API")
	fs.IntVar(&o.port, "port", 10001, "TCP port the node listens on for peers")
	fs.StringVar(&o.stun, "stun", "127.0.0.1:3478,127.0.0.2:3478", "STUN servers (ip:port or host:port, comma-separated; a host name adds each of its addresses); the first must answer change requests (stund) for NAT detection")
	fs.StringVar(&o.brokers, "brokers", "tcp://127.0.0.1:1883", "MQTT broker list shared by all agents (tcp://, tls://; comma-separated); an address's signal offsets index into it")
	fs.StringVar(&o.brokerUser, "broker-username", "", "MQTT username for every broker (mqttd needs one unless it allows anonymous access)")
	fs.StringVar(&o.brokerPassFile, "broker-password-file", "", "file holding the MQTT password (kept out of flags and logs)")
	fs.StringVar(&o.brokerCA, "broker-ca", "", "PEM file with the CA certificate(s) that sign tls:// brokers' certificates (default: the system's roots)")
	fs.StringVar(&o.stateDir, "state-dir", identity.DefaultDir(), "directory for the node key (created readable by this user only: 0700/0600, on Windows an access list)")
	fs.StringVar(&o.ntp, "ntp", "", "NTP/SNTP servers for the hole-punching clock (host[:port], comma-separated; empty: the --stun hosts on port 123, where stund --ntp answers)")
	fs.StringVar(&o.interfaces, "interfaces", "", "interfaces to use (comma-separated; empty: every usable one)")
	fs.BoolVar(&o.apiToken, "api-token", false, "require a bearer token on the API (created in <state-dir>/"+api.TokenFile+", mode 0600; the CLI reads it from there)")
	fs.BoolVar(&o.allowNullOrigin, "api-allow-null-origin", false, "accept the Origin \"null\" (HTML files opened from disk, as P2PD does). RISK: sandboxed iframes on any web site send it too, so any page you visit can then use the API; combine with --api-token")
	fs.BoolVar(&o.noPortMap, "no-portmap", false, "do not ask the gateway (NAT-PMP/PCP, UPnP) to forward the node port")
	fs.BoolVar(&o.noMigrate, "no-migrate", false, "keep pipes the relay won on the relay (by default they move to a punched or direct path when one opens, keeping the relay as standby)")
	fs.BoolVar(&o.noNATProfile, "no-nat-profile", false, "skip NAT detection and assume a port-restricted cone NAT")
	fs.StringVar(&o.punch, "punch", "tcp,udp", "transports the hole punch races (tcp, udp; comma-separated); tcp alone for peers whose agents predate UDP punching")
	fs.DurationVar(&o.startTimeout, "start-timeout", 15*time.Second, "how long start-up may take (interfaces, STUN, brokers)")
	o.turn.addFlags(fs)
	logFlags := logx.AddFlags(fs)
	if err := cl.Parse(args); err != nil {
		return err
	}
	log, err := logFlags.New(stderr)
	if err != nil {
		return err
	}
	// Every flag is checked before start-up does any work.
	if err := api.CheckListen(splitList(o.api)); err != nil {
		return fmt.Errorf("--api: %w", err)
	}
	cfg, err := o.agentConfig(ctx)
	if err != nil {
		return err
	}
	reg := adminhttp.NewRegistry()
	cfg.Registry, cfg.Log = reg, log

	inbound := make(chan *agent.Pipe, 64)
	cfg.OnPipe = func(p *agent.Pipe) {
		select { // never block the node
		case inbound <- p:
		default:
			p.Close()
		}
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	token := ""
	if o.apiToken {
		if token, err = api.LoadOrCreateToken(filepath.Join(o.stateDir, api.TokenFile)); err != nil {
			return err
		}
	}
	srv, err := api.New(api.Config{Backend: a, Listen: splitList(o.api), Gatherer: reg, Version: version.Version,
		AllowNullOrigin: o.allowNullOrigin, Token: token, Log: log})
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	defer a.Close()
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()
	if o.admin != "" {
		adm, err := adminhttp.Start(o.admin, reg, nil, log)
		if err != nil {
			return err
		}
		defer adm.Close()
		log.Info("admin http", "addr", adm.Addr().String())
	}
	go func() {
		for {
			select {
			case p := <-inbound:
				srv.Inbound(p) // after srv.Close, the registry closes it at once
			case <-ctx.Done():
				return
			}
		}
	}()
	addr, _ := a.Address()
	log.Info("agent ready", "version", version.Version, "api", fmt.Sprint(srv.Addrs()), "address", addr.String())
	<-ctx.Done()
	log.Info("agent stopping")
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func (o options) agentConfig(ctx context.Context) (agent.Config, error) {
	cfg := agent.Config{StateDir: o.stateDir, Port: o.port, NoPortMap: o.noPortMap, SkipNATProfile: o.noNATProfile, StartTimeout: o.startTimeout,
		Migrate: agent.MigrateConfig{Off: o.noMigrate}}
	if o.port < 1 || o.port > 65535 {
		return cfg, fmt.Errorf("--port: port %d out of range 1-65535", o.port)
	}
	cfg.PunchTransports = splitList(o.punch)
	for _, t := range cfg.PunchTransports {
		if t != agent.PunchTCP && t != agent.PunchUDP {
			return cfg, fmt.Errorf("--punch: %q is not tcp or udp", t)
		}
	}
	if len(cfg.PunchTransports) == 0 {
		return cfg, errors.New("--punch: name tcp, udp or both")
	}
	var err error
	if cfg.STUNServers, err = stunServers(ctx, splitList(o.stun)); err != nil {
		return cfg, err
	}
	if o.brokerCA != "" {
		pem, err := os.ReadFile(o.brokerCA)
		if err != nil {
			return cfg, fmt.Errorf("--broker-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("--broker-ca %s: no PEM certificate in it", o.brokerCA)
		}
		cfg.BrokerTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	pass := ""
	if o.brokerPassFile != "" {
		b, err := os.ReadFile(o.brokerPassFile)
		if err != nil {
			return cfg, fmt.Errorf("--broker-password-file: %w", err)
		}
		pass = strings.TrimSpace(string(b))
	}
	for _, u := range splitList(o.brokers) {
		if err := checkBrokerURL(u); err != nil {
			return cfg, fmt.Errorf("--brokers: %w", err)
		}
		cfg.Brokers = append(cfg.Brokers, psignal.Broker{URL: u, Username: o.brokerUser, Password: pass})
	}
	if len(cfg.Brokers) == 0 {
		return cfg, errors.New("--brokers: at least one broker is needed for signalling")
	}
	cfg.Clock.Servers = splitList(o.ntp)
	if o.interfaces != "" {
		cfg.Interfaces = netif.Options{Only: splitList(o.interfaces)}
	}
	if cfg.Relay, err = o.turn.relayConfig(); err != nil {
		return cfg, err
	}
	return cfg, nil
}
