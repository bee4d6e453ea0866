// Command turnd is p2pd's TURN relay (pion/turn/v3) with static and TURN REST
// credentials, a peer-address policy, quotas, metrics and graceful draining.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/p2pd-go/p2pd/internal/adminhttp"
	"github.com/p2pd-go/p2pd/internal/config"
	"github.com/p2pd-go/p2pd/internal/logx"
	"github.com/p2pd-go/p2pd/internal/version"
	"github.com/p2pd-go/p2pd/pkg/turnserver"
)

func main() { config.Main("turnd", run) }

type options struct {
	listen                string
	port, tlsPort         int
	noUDP, noTCP          bool
	sockets               int
	tlsCert, tlsKey       string
	realm                 string
	usersFile             string
	secrets, secretsFile  string
	relayIP, relayBind    string
	relayMin, relayMax    int
	allowPeers            string
	maxPerUser, maxAllocs int
	bandwidth             int64
	drain                 time.Duration
	tcpIdle               time.Duration
	maxTCP                int
	admin                 string
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cl := config.New("turnd", "TURND", "turnd "+version.Version+": TURN relay server (RFC 5766) with long-term and TURN REST credentials, a peer-address policy, quotas and metrics.")
	fs := cl.Flags()
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.listen, "listen", "0.0.0.0,::", "comma-separated addresses to serve TURN on (an unusable :: is skipped)")
	fs.IntVar(&o.port, "port", 3478, "TURN port for UDP and TCP")
	fs.BoolVar(&o.noUDP, "no-udp", false, "do not serve TURN over UDP")
	fs.BoolVar(&o.noTCP, "no-tcp", false, "do not serve TURN over TCP")
	fs.IntVar(&o.sockets, "sockets", 0, "UDP sockets per address sharing the port with SO_REUSEPORT (0: one per CPU)")
	fs.IntVar(&o.tlsPort, "tls-port", 5349, "TURN-over-TLS port (served when --tls-cert and --tls-key are set)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate chain file (PEM)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&o.realm, "realm", "p2pd", "authentication realm")
	fs.StringVar(&o.usersFile, "users-file", "", "static long-term credentials, one username:password per line")
	fs.StringVar(&o.secrets, "auth-secret", "", "comma-separated TURN REST API shared secrets; any of them is accepted (rotation)")
	fs.StringVar(&o.secretsFile, "auth-secret-file", "", "file with TURN REST API shared secrets, one per line (added to --auth-secret)")
	fs.StringVar(&o.relayIP, "relay-ip", "", "relay address given to clients, e.g. the public IP of a server behind 1:1 NAT (default: --relay-bind, or the first global IPv4)")
	fs.StringVar(&o.relayBind, "relay-bind", "0.0.0.0", "IPv4 address relay sockets bind to")
	fs.IntVar(&o.relayMin, "relay-min-port", 49152, "lowest relay port")
	fs.IntVar(&o.relayMax, "relay-max-port", 65535, "highest relay port")
	fs.StringVar(&o.allowPeers, "allow-peer", "", "comma-separated CIDRs peers may be in even though the peer policy refuses them (e.g. your private network); never opens turnd's own TURN, TLS and admin ports")
	fs.IntVar(&o.maxPerUser, "max-allocations-per-user", 10, "allocations one user may hold (0: unlimited); REST users count by their user part")
	fs.IntVar(&o.maxAllocs, "max-allocations", 10000, "allocations the server holds in total (0: unlimited)")
	fs.Int64Var(&o.bandwidth, "max-bandwidth", 0, "bytes per second per allocation and direction; excess datagrams are dropped (0: no cap)")
	fs.DurationVar(&o.tcpIdle, "tcp-idle", 30*time.Second, "close a TCP/TLS connection that holds no allocation after this long without data (0: never)")
	fs.IntVar(&o.maxTCP, "max-tcp-conns", 10000, "open TCP/TLS connections at most; more are closed at once (0: unlimited)")
	fs.DurationVar(&o.drain, "drain", 30*time.Second, "on SIGTERM/SIGINT refuse new allocations and keep existing ones this long (or until none is left), then exit")
	fs.StringVar(&o.admin, "admin", "127.0.0.1:9102", "admin HTTP address for /metrics and /healthz (empty: off)")
	logFlags := logx.AddFlags(fs)
	if err := cl.Parse(args); err != nil {
		return err
	}
	log, err := logFlags.New(stderr)
	if err != nil {
		return err
	}
	config.TuneGC(gcPercent)
	cfg, err := o.serverConfig()
	if err != nil {
		return err
	}
	reg := adminhttp.NewRegistry()
	// The admin listener starts first so its port is known to the peer
	// policy (a relay must never reach it); /healthz fails until the server runs.
	var running atomic.Pointer[turnserver.Server]
	health := func() error {
		if s := running.Load(); s != nil {
			return s.Health()
		}
		return errors.New("turnd: starting")
	}
	if o.admin != "" {
		adm, err := adminhttp.Start(o.admin, reg, health, log)
		if err != nil {
			return err
		}
		defer adm.Close()
		log.Info("admin http", "addr", adm.Addr().String())
		if ap, err := netip.ParseAddrPort(adm.Addr().String()); err == nil {
			cfg.OwnPorts = append(cfg.OwnPorts, int(ap.Port()))
		}
	}
	srv, err := turnserver.New(cfg, log, reg)
	if err != nil {
		return err
	}
	defer srv.Close()
	running.Store(srv)
	log.Info("turnd serving", "version", version.Version, "udp", fmt.Sprint(srv.UDPAddrs()), "tcp", fmt.Sprint(srv.TCPAddrs()),
		"tls", fmt.Sprint(srv.TLSAddrs()), "relay", fmt.Sprintf("%s %d-%d", cfg.RelayIP, cfg.RelayMinPort, cfg.RelayMaxPort),
		"users", len(cfg.Users), "rest_secrets", len(cfg.Secrets))
	<-ctx.Done()
	// A second signal during the drain stops at once.
	dctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return srv.Shutdown(dctx, o.drain)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseAddr(flag, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("--%s: %w", flag, err)
	}
	return a, nil
}

func checkPort(flag string, v int) error {
	if v < 1 || v > 65535 {
		return fmt.Errorf("--%s: %d is not a port (1-65535)", flag, v)
	}
	return nil
}

func (o *options) serverConfig() (turnserver.Config, error) {
	cfg := turnserver.Config{
		Realm: o.realm, Port: o.port, NoUDP: o.noUDP, NoTCP: o.noTCP, UDPWorkers: o.sockets, TLSPort: o.tlsPort,
		RelayMinPort: o.relayMin, RelayMaxPort: o.relayMax,
		MaxAllocsPerUser: o.maxPerUser, MaxAllocs: o.maxAllocs, Bandwidth: o.bandwidth,
		TCPIdle: o.tcpIdle, MaxTCPConns: o.maxTCP,
	}
	for flag, v := range map[string]int{"port": o.port, "tls-port": o.tlsPort, "relay-min-port": o.relayMin, "relay-max-port": o.relayMax} {
		if err := checkPort(flag, v); err != nil {
			return cfg, err
		}
	}
	if o.relayMin > o.relayMax {
		return cfg, fmt.Errorf("--relay-min-port %d is above --relay-max-port %d", o.relayMin, o.relayMax)
	}
	if o.noUDP && o.noTCP && o.tlsCert == "" {
		return cfg, errors.New("--no-udp and --no-tcp without TLS leave nothing to serve")
	}
	if o.realm == "" {
		return cfg, errors.New("--realm must not be empty")
	}
	if o.maxPerUser < 0 || o.maxAllocs < 0 || o.bandwidth < 0 || o.sockets < 0 || o.maxTCP < 0 || o.tcpIdle < 0 {
		return cfg, errors.New("quotas, --max-bandwidth, --max-tcp-conns, --tcp-idle and --sockets must not be negative")
	}
	for _, s := range splitList(o.listen) {
		a, err := parseAddr("listen", s)
		if err != nil {
			return cfg, err
		}
		cfg.ListenIPs = append(cfg.ListenIPs, a)
	}
	if len(cfg.ListenIPs) == 0 {
		return cfg, errors.New("--listen: no address")
	}
	var err error
	if cfg.RelayIP, err = parseAddr("relay-ip", o.relayIP); err != nil {
		return cfg, err
	}
	if cfg.RelayBind, err = parseAddr("relay-bind", o.relayBind); err != nil {
		return cfg, err
	}
	if cfg.AllowPeers, err = turnserver.ParsePrefixes(splitList(o.allowPeers)); err != nil {
		return cfg, fmt.Errorf("--allow-peer: %w", err)
	}
	if o.usersFile != "" {
		if cfg.Users, err = turnserver.LoadUsers(o.usersFile); err != nil {
			return cfg, fmt.Errorf("--users-file: %w", err)
		}
	}
	cfg.Secrets = splitList(o.secrets)
	if o.secretsFile != "" {
		more, err := turnserver.LoadSecrets(o.secretsFile)
		if err != nil {
			return cfg, fmt.Errorf("--auth-secret-file: %w", err)
		}
		cfg.Secrets = append(cfg.Secrets, more...)
	}
	if len(cfg.Users) == 0 && len(cfg.Secrets) == 0 {
		return cfg, errors.New("no credentials: set --users-file and/or --auth-secret / --auth-secret-file")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return cfg, errors.New("--tls-cert and --tls-key go together")
	}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return cfg, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return cfg, nil
}
