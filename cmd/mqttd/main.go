// Command mqttd is the MQTT broker of a private p2pd stack: agents signal
// each other through it on p2pd/<node id> topics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"syscall"

	"github.com/p2pd-go/p2pd/internal/adminhttp"
	"github.com/p2pd-go/p2pd/internal/config"
	"github.com/p2pd-go/p2pd/internal/logx"
	"github.com/p2pd-go/p2pd/internal/version"
	"github.com/p2pd-go/p2pd/pkg/mqttbroker"
)

const summary = `mqttd - MQTT broker (3.1.1 and 5) for p2pd signalling.

Clients log in with a users file (bcrypt; make entries with "mqttd passwd").
Topics p2pd/<node id> are the signalling namespace: publish and subscribe
to exact topics only; wildcards there are refused. $SYS is for admin users.
Other topics follow an optional rules file.

  mqttd passwd [--admin] [--delete] [--cost N] USERS_FILE NAME
      adds or replaces NAME (password read from the first line of stdin),
      or removes it with --delete.`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "passwd" {
		if err := passwd(os.Args[2:], os.Stdin, os.Stderr); err != nil {
			if !errors.Is(err, flag.ErrHelp) {
				fmt.Fprintln(os.Stderr, "mqttd:", err)
			}
			os.Exit(2)
		}
		return
	}
	os.Exit(serve(os.Args[1:]))
}

type settings struct {
	log        *logx.Flags
	broker     mqttbroker.Config
	admin      string
	packetSize uint
	inflight   uint
	receiveMax uint
	pending    uint
}

func parse(args []string) (*settings, error) {
	s := &settings{broker: mqttbroker.Config{Limits: mqttbroker.DefaultLimits()}}
	cf := loader(s)
	if err := cf.Parse(args); err != nil {
		return nil, err
	}
	return s.finish()
}

// loader defines every flag on a config loader, writing into s.
func loader(s *settings) *config.Loader {
	c := &s.broker
	l := &c.Limits
	cf := config.New("mqttd", "MQTTD", summary)
	fs := cf.Flags()
	fs.StringVar(&c.TCP, "listen", ":1883", "MQTT over TCP listen address (empty disables)")
	fs.StringVar(&c.WS, "ws-listen", ":8083", "MQTT over WebSocket listen address, for browser apps (empty disables)")
	fs.StringVar(&c.TLS, "tls-listen", ":8883", "MQTT over TLS listen address; used only with --tls-cert and --tls-key")
	fs.StringVar(&c.WSS, "wss-listen", "", "MQTT over WebSocket with TLS listen address, e.g. :8084 (needs --tls-cert/--tls-key)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate chain, PEM file")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key, PEM file")
	fs.StringVar(&c.UsersFile, "users", "", "users file: name:bcrypt-hash[:admin] lines (see mqttd passwd)")
	fs.BoolVar(&c.AllowAnonymous, "allow-anonymous", false, "let clients without a username connect (they still obey the ACL)")
	fs.StringVar(&c.RulesFile, "acl-rules", "", "ACL rules file for topics outside p2pd/ and $SYS (default: those topics are refused)")
	fs.BoolVar(&c.BindUsername, "acl-bind-username", false, "strict mode: a client may subscribe only to p2pd/<its own username>")
	fs.StringVar(&c.Store, "store", "", "bolt database file that keeps sessions and retained messages across restarts (default: memory only)")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", mqttbroker.DefaultConnectTimeout, "close connections that send no CONNECT within this time")
	fs.IntVar(&l.MaxClients, "max-clients", l.MaxClients, "connected clients at most; more get CONNACK server busy (0 = no limit)")
	fs.IntVar(&l.MaxSessions, "max-sessions", l.MaxSessions, "sessions held, connected or kept for reconnecting clients; more get CONNACK server busy (0 = no limit)")
	fs.UintVar(&s.packetSize, "max-packet-size", uint(l.MaxPacketSize), "largest MQTT packet in bytes; bigger ones close the connection (0 = no limit)")
	fs.UintVar(&s.inflight, "max-inflight", uint(l.MaxInflight), "per client, outgoing QoS 1/2 messages sent and awaiting acknowledgement; more wait in the client's queue (1-65535; an MQTT 5 client's smaller Receive Maximum wins)")
	fs.IntVar(&l.MaxQueued, "max-queued", l.MaxQueued, "per client, messages waiting behind --max-inflight; one more ends the session (MQTT 5: DISCONNECT 0x97) instead of losing it")
	fs.IntVar(&l.MaxQueuedBytes, "max-queued-bytes", l.MaxQueuedBytes, "per client, bytes of messages waiting behind --max-inflight or to be written; more end the session like --max-queued")
	fs.DurationVar(&l.QueueWait, "queue-wait", l.QueueWait, "longest a publish waits for a subscriber whose queue is half full to drain, so publishers slow to their subscribers' pace (0: no waiting)")
	fs.UintVar(&s.receiveMax, "receive-maximum", uint(l.ReceiveMaximum), "per client, incoming QoS 1/2 publishes not yet acknowledged (1-65535)")
	fs.UintVar(&s.pending, "max-pending-writes", uint(l.MaxPendingWrites), "per client, packets queued for a slow reader; more are dropped")
	fs.DurationVar(&l.MessageExpiry, "message-expiry", l.MessageExpiry, "longest time a message, also a retained one, is kept (0 = no limit)")
	fs.DurationVar(&l.SessionExpiry, "session-expiry", l.SessionExpiry, "longest time a disconnected session is kept (0 = no limit)")
	fs.IntVar(&l.MaxSubscriptions, "max-subscriptions", l.MaxSubscriptions, "subscriptions per client (0 = no limit)")
	fs.Float64Var(&l.PublishRate, "publish-rate", l.PublishRate, "publishes per second per client; over it they are refused (0 = no limit)")
	fs.IntVar(&l.PublishBurst, "publish-burst", l.PublishBurst, "publishes a client may send at once above --publish-rate")
	fs.IntVar(&l.MaxRetained, "max-retained", l.MaxRetained, "retained messages the broker holds (0 = no limit)")
	fs.StringVar(&s.admin, "admin", "127.0.0.1:9103", "admin HTTP address for /metrics and /healthz (empty disables)")
	s.log = logx.AddFlags(fs)
	return cf
}

// finish checks ranges and fills the broker config from the raw flags.
func (s *settings) finish() (*settings, error) {
	c, l := &s.broker, &s.broker.Limits
	if c.TLSCert == "" && c.TLSKey == "" {
		c.TLS = "" // TLS listener only with a certificate
	}
	if s.packetSize > math.MaxUint32 || s.pending > math.MaxInt32 {
		return nil, errors.New("mqttd: --max-packet-size or --max-pending-writes out of range")
	}
	if s.inflight < 1 || s.inflight > math.MaxUint16 || s.receiveMax < 1 || s.receiveMax > math.MaxUint16 {
		return nil, errors.New("mqttd: --max-inflight and --receive-maximum must be 1-65535")
	}
	if l.MaxQueued < 1 || l.MaxQueuedBytes < 1 || l.QueueWait < 0 {
		return nil, errors.New("mqttd: --max-queued and --max-queued-bytes must be at least 1, --queue-wait not negative")
	}
	l.MaxPacketSize, l.MaxInflight = uint32(s.packetSize), uint16(s.inflight)
	l.ReceiveMaximum, l.MaxPendingWrites = uint16(s.receiveMax), int32(s.pending)
	return s, nil
}

func serve(args []string) int {
	config.TuneGC(gcPercent)
	s, err := parse(args)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mqttd:", err)
		return 2
	}
	log, err := s.log.New(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mqttd:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, s, log); err != nil {
		log.Error("mqttd stopped", "err", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, s *settings, log *slog.Logger) error {
	reg := adminhttp.NewRegistry()
	b, err := mqttbroker.Start(s.broker, reg, log)
	if err != nil {
		return err
	}
	defer b.Close()
	if s.admin != "" {
		adm, err := adminhttp.Start(s.admin, reg, b.Healthy, log)
		if err != nil {
			return err
		}
		defer adm.Close()
		log.Info("admin http", "addr", adm.Addr().String())
	}
	log.Info("mqttd serving", "version", version.Version, "tcp", b.Addr("tcp"), "ws", b.Addr("ws"),
		"tls", b.Addr("tls"), "wss", b.Addr("wss"), "store", s.broker.Store, "anonymous", s.broker.AllowAnonymous)
	<-ctx.Done()
	log.Info("mqttd stopping")
	return nil
}

func passwd(args []string, stdin io.Reader, stderr io.Writer) error {
	fs := flag.NewFlagSet("mqttd passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.Bool("admin", false, "the user may read $SYS topics")
	del := fs.Bool("delete", false, "remove the user instead")
	cost := fs.Int("cost", 0, "bcrypt cost (default 10)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: mqttd passwd [--admin] [--delete] [--cost N] USERS_FILE NAME\n\nThe password is the first line of stdin.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("passwd: want USERS_FILE and NAME")
	}
	var password string
	if !*del {
		p, err := mqttbroker.ReadPassword(stdin)
		if err != nil {
			return err
		}
		password = p
	}
	return mqttbroker.Passwd(fs.Arg(0), fs.Arg(1), password, *admin, *del, *cost)
}
