package mqttbroker

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/p2pd-go/p2pd/internal/testcert"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/p2pd-go/p2pd/internal/metricstest"
	"golang.org/x/crypto/bcrypt"
)

// selfSigned writes a certificate for 127.0.0.1 and returns the file paths
// and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	c := testcert.New(t, "mqttd test")
	return c.CertFile, c.KeyFile, c.Pool
}

func TestPubSubEveryListener(t *testing.T) {
	cfg := testConfig(t)
	cfg.WS, cfg.TLS, cfg.WSS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	var pool *x509.CertPool
	cfg.TLSCert, cfg.TLSKey, pool = selfSigned(t)
	b, reg := startBroker(t, cfg)
	metricstest.Lint(t, reg, "mqttd")
	withTLS := func(o *paho.ClientOptions) { o.SetTLSConfig(&tls.Config{RootCAs: pool}) }

	for _, tc := range []struct{ name, url string }{
		{"tcp", "tcp://" + b.Addr("tcp")},
		{"ws", "ws://" + b.Addr("ws") + "/mqtt"},
		{"tls", "ssl://" + b.Addr("tls")},
		{"wss", "wss://" + b.Addr("wss") + "/mqtt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "p2pd/" + newNodeID(t)
			sub := mustPaho(t, tc.url, userName, userPass, withTLS)
			code, ch := subscribe(t, sub, topic, 1)
			if code != 1 {
				t.Fatalf("subscribe %s: granted %#x, want 1", topic, code)
			}
			pub := mustPaho(t, tc.url, adminName, adminPass, withTLS)
			for _, qos := range []byte{0, 1, 2} {
				msg := []byte{'m', qos}
				wait(t, pub.Publish(topic, qos, false, msg))
				if got := recv(t, ch); !bytes.Equal(got, msg) {
					t.Fatalf("qos %d: got %q, want %q", qos, got, msg)
				}
			}
			if n := counter(t, reg, "mqttd_connections_total", "listener", tc.name); n < 2 {
				t.Errorf("mqttd_connections_total{listener=%q} = %v, want >= 2", tc.name, n)
			}
		})
	}
}

func TestSubscribeRefusals(t *testing.T) {
	cfg := testConfig(t)
	b, reg := startBroker(t, cfg)
	url := "tcp://" + b.Addr("tcp")
	user := mustPaho(t, url, userName, userPass)
	admin := mustPaho(t, url, adminName, adminPass)
	id := newNodeID(t)

	for _, tc := range []struct {
		name   string
		c      paho.Client
		filter string
		want   byte
	}{
		{"exact signalling topic", user, "p2pd/" + id, 0},
		{"signalling wildcard #", user, "p2pd/#", 0x80},
		{"signalling wildcard +", user, "p2pd/+", 0x80},
		{"admin signalling wildcard", admin, "p2pd/#", 0x80},
		{"everything", user, "#", 0x80},
		{"first level +", user, "+/" + id, 0x80},
		{"shared wildcard", user, "$share/g/p2pd/#", 0x80},
		{"shared exact", user, "$share/g/p2pd/" + id, 0},
		{"deeper signalling", user, "p2pd/" + id + "/x", 0x80},
		{"bad node id", user, "p2pd/" + id[:51] + "1", 0x80},
		{"upper-case node id", user, "p2pd/A" + id[1:], 0x80},
		{"sys by user", user, "$SYS/#", 0x80},
		{"sys by admin", admin, "$SYS/#", 0},
		{"other topic without rules", user, "chat/room", 0x80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := counter(t, reg, "mqttd_acl_denials_total", "action", "subscribe")
			got, _ := subscribe(t, tc.c, tc.filter, 0)
			if got != tc.want {
				t.Fatalf("subscribe %q: got %#x, want %#x", tc.filter, got, tc.want)
			}
			after := counter(t, reg, "mqttd_acl_denials_total", "action", "subscribe")
			if refused := tc.want == 0x80; refused != (after == before+1) {
				t.Errorf("acl denial counter went %v -> %v (refused=%v)", before, after, refused)
			}
		})
	}
}

func TestSysForAdminsOnly(t *testing.T) {
	b, _ := startBroker(t, testConfig(t))
	url := "tcp://" + b.Addr("tcp")
	admin := mustPaho(t, url, adminName, adminPass)
	code, ch := subscribe(t, admin, "$SYS/broker/version", 0)
	if code != 0 {
		t.Fatalf("admin $SYS subscribe: %#x", code)
	}
	if got := recv(t, ch); len(got) == 0 {
		t.Fatal("admin got an empty $SYS/broker/version")
	}
	user := mustPaho(t, url, userName, userPass)
	if code, _ := subscribe(t, user, "$SYS/broker/version", 0); code != 0x80 {
		t.Fatalf("user $SYS subscribe: got %#x, want 0x80", code)
	}
}

func TestLogin(t *testing.T) {
	cfg := testConfig(t)
	b, reg := startBroker(t, cfg)
	anonCfg := testConfig(t)
	anonCfg.AllowAnonymous = true
	anonB, _ := startBroker(t, anonCfg)

	for _, tc := range []struct {
		name, addr, user, pass string
		ok                     bool
	}{
		{"good password", b.Addr("tcp"), userName, userPass, true},
		{"bad password", b.Addr("tcp"), userName, "wrong", false},
		{"unknown user", b.Addr("tcp"), "mallory", userPass, false},
		{"anonymous when off", b.Addr("tcp"), "", "", false},
		{"anonymous when on", anonB.Addr("tcp"), "", "", true},
		{"bad password when anonymous on", anonB.Addr("tcp"), userName, "wrong", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Refusals: MQTT 5 0x86 bad username or password, 3.1.1 5 not authorized.
			for v, refused := range map[byte]byte{4: 0x05, 5: 0x86} {
				_, code := connectRaw(t, tc.addr, v, tc.user, tc.pass)
				want := byte(0)
				if !tc.ok {
					want = refused
				}
				if code != want {
					t.Errorf("MQTT v%d: CONNACK code %#x, want %#x", v, code, want)
				}
			}
		})
	}
	if n := counter(t, reg, "mqttd_auth_failures_total"); n != 6 {
		t.Errorf("mqttd_auth_failures_total = %v, want 6", n)
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no users and no anonymous", func(c *Config) { c.UsersFile = "" }},
		{"missing users file", func(c *Config) { c.UsersFile = filepath.Join(t.TempDir(), "nope") }},
		{"tls without cert", func(c *Config) { c.TLS = "127.0.0.1:0" }},
		{"no listener", func(c *Config) { c.TCP = "" }},
		{"zero pending writes", func(c *Config) { c.Limits.MaxPendingWrites = 0 }},
		{"missing rules file", func(c *Config) { c.RulesFile = filepath.Join(t.TempDir(), "nope") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.mod(&cfg)
			if b, err := Start(cfg, nil, testLogger(t)); err == nil {
				b.Close()
				t.Fatal("Start accepted a bad config")
			}
		})
	}
}

func TestPublishRefusals(t *testing.T) {
	b, reg := startBroker(t, testConfig(t))
	addr := b.Addr("tcp")
	t.Run("v5 QoS 1 gets not authorized", func(t *testing.T) {
		rc, _ := connectRaw(t, addr, 5, userName, userPass)
		rc.send(publishPacket("p2pd/not-a-node", 1, 1, []byte("x")))
		if code := rc.mustRecv(packets.Puback).ReasonCode; code != 0x87 {
			t.Fatalf("PUBACK %#x, want 0x87", code)
		}
	})
	t.Run("v3.1.1 QoS 0 is dropped, connection stays", func(t *testing.T) {
		rc, _ := connectRaw(t, addr, 4, userName, userPass)
		rc.send(publishPacket("chat/room", 0, 0, []byte("x")))
		rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		rc.mustRecv(packets.Pingresp)
	})
	t.Run("v3.1.1 QoS 1 is disconnected", func(t *testing.T) {
		rc, _ := connectRaw(t, addr, 4, userName, userPass)
		rc.send(publishPacket("chat/room", 1, 1, []byte("x")))
		for {
			pk, err := rc.recv()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("connection kept open after a refused QoS 1 publish")
			}
			if err != nil {
				break // closed, as 3.1.1 has no refusal for a publish
			}
			if pk.FixedHeader.Type == packets.Puback {
				t.Fatal("refused publish was acknowledged")
			}
		}
	})
	if n := counter(t, reg, "mqttd_acl_denials_total", "action", "publish"); n != 3 {
		t.Errorf("publish denials = %v, want 3", n)
	}
}

func TestRulesFile(t *testing.T) {
	cfg := testConfig(t)
	cfg.RulesFile = filepath.Join(t.TempDir(), "rules")
	rules := "deny * readwrite chat/secret\nallow * readwrite chat/#\nallow @admin read audit/#\n"
	if err := os.WriteFile(cfg.RulesFile, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := startBroker(t, cfg)
	url := "tcp://" + b.Addr("tcp")
	user := mustPaho(t, url, userName, userPass)
	admin := mustPaho(t, url, adminName, adminPass)
	code, ch := subscribe(t, user, "chat/room/+", 1)
	if code != 1 {
		t.Fatalf("chat/room/+: %#x", code)
	}
	wait(t, admin.Publish("chat/room/1", 1, false, []byte("hi")))
	if got := recv(t, ch); string(got) != "hi" {
		t.Fatalf("got %q", got)
	}
	for _, tc := range []struct {
		c      paho.Client
		filter string
		want   byte
	}{{user, "chat/secret", 0x80}, {user, "chat/+", 0x80}, {user, "audit/x", 0x80}, {admin, "audit/x", 0}, {user, "other", 0x80}} {
		if got, _ := subscribe(t, tc.c, tc.filter, 0); got != tc.want {
			t.Errorf("subscribe %q: %#x, want %#x", tc.filter, got, tc.want)
		}
	}
}

func TestBindUsername(t *testing.T) {
	cfg := testConfig(t)
	cfg.BindUsername = true
	id, other := newNodeID(t), newNodeID(t)
	if err := Passwd(cfg.UsersFile, id, "node-pw", false, false, bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	b, _ := startBroker(t, cfg)
	node := mustPaho(t, "tcp://"+b.Addr("tcp"), id, "node-pw")
	if code, _ := subscribe(t, node, "p2pd/"+id, 1); code != 1 {
		t.Errorf("own topic: %#x", code)
	}
	if code, _ := subscribe(t, node, "p2pd/"+other, 1); code != 0x80 {
		t.Errorf("other node's topic: %#x, want 0x80", code)
	}
	// Publishing to any node stays open.
	wait(t, node.Publish("p2pd/"+other, 1, false, []byte("x")))
}
