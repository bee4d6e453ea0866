// Command stund is p2pd's multi-IP STUN server: RFC 5389/8489 Binding over
// UDP and TCP, RFC 3489 CHANGE-REQUEST/CHANGED-ADDRESS and RFC 5780
// OTHER-ADDRESS/RESPONSE-ORIGIN, IPv4 and IPv6, optional SNTP answers.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/p2pd-go/p2pd/internal/adminhttp"
	"github.com/p2pd-go/p2pd/internal/config"
	"github.com/p2pd-go/p2pd/internal/logx"
	"github.com/p2pd-go/p2pd/internal/version"
	"github.com/p2pd-go/p2pd/pkg/stun"
)

func main() { config.Main("stund", run) }

type options struct {
	primary4, alternate4, primary6, alternate6 string
	port, altPort                              uint
	noUDP, noTCP                               bool
	software                                   string
	rate                                       float64
	burst                                      int
	sockets                                    int
	tcpIdle                                    time.Duration
	maxTCP                                     int
	ntp                                        bool
	ntpPort                                    uint
	admin                                      string
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cl := config.New("stund", "STUND", "stund "+version.Version+": multi-IP STUN server (RFC 5389/8489, RFC 3489 change requests, RFC 5780 NAT discovery) with optional SNTP.")
	fs := cl.Flags()
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.primary4, "primary-ip4", "127.0.0.1", "primary IPv4 address to serve on (empty: no IPv4)")
	fs.StringVar(&o.alternate4, "alternate-ip4", "", "alternate IPv4 address; with it stund serves all four IP:port pairs and honours CHANGE-REQUEST")
	fs.StringVar(&o.primary6, "primary-ip6", "", "primary IPv6 address to serve on (empty: no IPv6)")
	fs.StringVar(&o.alternate6, "alternate-ip6", "", "alternate IPv6 address")
	fs.UintVar(&o.port, "port", 3478, "primary STUN port (UDP and TCP)")
	fs.UintVar(&o.altPort, "alt-port", 3479, "alternate STUN port (used with an alternate address)")
	fs.BoolVar(&o.noUDP, "no-udp", false, "do not serve STUN over UDP")
	fs.BoolVar(&o.noTCP, "no-tcp", false, "do not serve STUN over TCP")
	fs.StringVar(&o.software, "software", "p2pd", "SOFTWARE attribute in RFC 5389 responses (empty: omitted)")
	fs.Float64Var(&o.rate, "rate", 50, "requests per second allowed per source IP (token bucket; 0 disables the limit)")
	fs.IntVar(&o.burst, "burst", 100, "requests a source IP may send at once before --rate applies")
	fs.IntVar(&o.sockets, "sockets", 0, "UDP sockets per address sharing the port with SO_REUSEPORT (0: one per CPU)")
	fs.DurationVar(&o.tcpIdle, "tcp-idle", 30*time.Second, "close a STUN TCP connection idle this long")
	fs.IntVar(&o.maxTCP, "max-tcp-conns", 10000, "maximum open STUN TCP connections")
	fs.BoolVar(&o.ntp, "ntp", false, "also answer SNTP requests on UDP --ntp-port of each primary address")
	fs.UintVar(&o.ntpPort, "ntp-port", 123, "SNTP port (with --ntp)")
	fs.StringVar(&o.admin, "admin", "127.0.0.1:9101", "admin HTTP address for /metrics and /healthz (empty: off)")
	logFlags := logx.AddFlags(fs)
	if err := cl.Parse(args); err != nil {
		return err
	}
	log, err := logFlags.New(stderr)
	if err != nil {
		return err
	}
	cfg, err := o.serverConfig()
	if err != nil {
		return err
	}
	reg := adminhttp.NewRegistry()
	cfg.Metrics = stun.NewMetrics()
	if err := cfg.Metrics.Register(reg); err != nil {
		return err
	}
	cfg.Log = log
	srv, err := stun.Listen(cfg)
	if err != nil {
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
	log.Info("stund serving", "version", version.Version, "udp", fmt.Sprint(srv.UDPAddrs()), "tcp", fmt.Sprint(srv.TCPAddrs()),
		"ntp", fmt.Sprint(srv.NTPAddrs()), "rate", o.rate, "burst", o.burst)
	<-ctx.Done()
	log.Info("stund stopping")
	return nil
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

func port(flag string, v uint) (uint16, error) {
	if v == 0 || v > 65535 {
		return 0, fmt.Errorf("--%s: %d is not a port (1-65535)", flag, v)
	}
	return uint16(v), nil
}

func (o *options) serverConfig() (stun.ServerConfig, error) {
	var cfg stun.ServerConfig
	var err error
	for _, a := range []struct {
		flag string
		val  string
		dst  *netip.Addr
	}{
		{"primary-ip4", o.primary4, &cfg.Primary4}, {"alternate-ip4", o.alternate4, &cfg.Alternate4},
		{"primary-ip6", o.primary6, &cfg.Primary6}, {"alternate-ip6", o.alternate6, &cfg.Alternate6},
	} {
		if *a.dst, err = parseAddr(a.flag, a.val); err != nil {
			return cfg, err
		}
	}
	if cfg.Port, err = port("port", o.port); err != nil {
		return cfg, err
	}
	if cfg.AltPort, err = port("alt-port", o.altPort); err != nil {
		return cfg, err
	}
	if o.rate < 0 || o.burst < 1 {
		return cfg, errors.New("--rate must be >= 0 and --burst >= 1")
	}
	cfg.NoUDP, cfg.NoTCP = o.noUDP, o.noTCP
	cfg.Software = o.software
	cfg.Rate, cfg.Burst = o.rate, o.burst
	cfg.Sockets = o.sockets
	cfg.TCPIdle, cfg.MaxTCPConns = o.tcpIdle, o.maxTCP
	if o.ntp {
		np, err := port("ntp-port", o.ntpPort)
		if err != nil {
			return cfg, err
		}
		for _, a := range []netip.Addr{cfg.Primary4, cfg.Primary6} {
			if a.IsValid() {
				cfg.NTPAddrs = append(cfg.NTPAddrs, netip.AddrPortFrom(a, np))
			}
		}
	}
	return cfg, nil
}
