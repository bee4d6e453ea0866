package mqttbroker

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
)

// Test users; hashed at bcrypt's minimum cost to keep tests quick.
const (
	userName  = "alice"
	userPass  = "alice-secret"
	adminName = "root"
	adminPass = "root-secret"
)

func newNodeID(t testing.TB) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(k))
}

func writeUsers(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	if err := Passwd(path, userName, userPass, false, false, bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := Passwd(path, adminName, adminPass, true, false, bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	return path
}

func testConfig(t testing.TB) Config {
	return Config{
		TCP:            "127.0.0.1:0",
		UsersFile:      writeUsers(t),
		ConnectTimeout: 5 * time.Second,
		Limits:         DefaultLimits(),
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startBroker(t testing.TB, cfg Config) (*Broker, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := Start(cfg, reg, testLogger(t))
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, reg
}

func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// pahoConnect connects a paho (MQTT 3.1.1) client; url like tcp://host:port.
func pahoConnect(t testing.TB, url, user, pass string, tweak ...func(*paho.ClientOptions)) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetUsername(user).SetPassword(pass).
		SetClientID(fmt.Sprintf("t-%d", time.Now().UnixNano())).SetAutoReconnect(false).
		SetConnectRetry(false).SetConnectTimeout(10 * time.Second).SetProtocolVersion(4)
	for _, f := range tweak {
		f(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func mustPaho(t testing.TB, url, user, pass string, tweak ...func(*paho.ClientOptions)) paho.Client {
	t.Helper()
	c, err := pahoConnect(t, url, user, pass, tweak...)
	if err != nil {
		t.Fatalf("paho connect %s as %q: %v", url, user, err)
	}
	return c
}

func wait(t testing.TB, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(15 * time.Second) {
		t.Fatal("paho: timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("paho: %v", err)
	}
}

// subscribe returns the granted code (0-2, or 0x80 refused) and a channel of
// payloads.
func subscribe(t testing.TB, c paho.Client, filter string, qos byte) (byte, <-chan []byte) {
	t.Helper()
	ch := make(chan []byte, 64)
	tok := c.Subscribe(filter, qos, func(_ paho.Client, m paho.Message) {
		select {
		case ch <- m.Payload():
		default:
		}
	})
	wait(t, tok)
	key := filter
	if strings.HasPrefix(key, "$share/") { // paho keys results by the filter without $share/<group>/
		key = strings.Join(strings.Split(key, "/")[2:], "/")
	}
	code, ok := tok.(*paho.SubscribeToken).Result()[key]
	if !ok {
		t.Fatalf("paho: no SUBACK code for %q", filter)
	}
	return code, ch
}

func recv(t testing.TB, ch <-chan []byte) []byte {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(15 * time.Second):
		t.Fatal("no message within 15 s")
		return nil
	}
}

// rawClient speaks MQTT over a plain connection with mochi's packet codec,
// for what paho cannot do (MQTT 5, malformed input).
type rawClient struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	v    byte
}

func dialRaw(t testing.TB, addr string, version byte) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{t: t, conn: c, r: bufio.NewReader(c), v: version}
}

func (rc *rawClient) send(pk packets.Packet) {
	rc.t.Helper()
	pk.ProtocolVersion = rc.v
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	default:
		rc.t.Fatalf("rawClient: cannot encode type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		rc.t.Fatal(err)
	}
	if _, err := rc.conn.Write(buf.Bytes()); err != nil {
		rc.t.Fatal(err)
	}
}

// recv reads one packet; io errors are returned (the broker may close).
func (rc *rawClient) recv() (packets.Packet, error) {
	var pk packets.Packet
	b, err := rc.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(rc.r)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(rc.r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = rc.v
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Pingresp:
	}
	return pk, err
}

func (rc *rawClient) mustRecv(typ byte) packets.Packet {
	rc.t.Helper()
	pk, err := rc.recv()
	if err != nil {
		rc.t.Fatalf("rawClient: want packet type %d: %v", typ, err)
	}
	if pk.FixedHeader.Type != typ {
		rc.t.Fatalf("rawClient: got packet type %d, want %d", pk.FixedHeader.Type, typ)
	}
	return pk
}

func connectPacket(id, user, pass string) packets.Packet {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}}
	pk.Connect.ProtocolName = []byte("MQTT")
	pk.Connect.Clean = true
	pk.Connect.Keepalive = 60
	pk.Connect.ClientIdentifier = id
	if user != "" {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(user)
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(pass)
	}
	return pk
}

// connectRaw opens a raw session and returns it with the CONNACK reason code.
func connectRaw(t testing.TB, addr string, version byte, user, pass string) (*rawClient, byte) {
	t.Helper()
	rc := dialRaw(t, addr, version)
	rc.send(connectPacket(fmt.Sprintf("raw-%d", time.Now().UnixNano()), user, pass))
	ack := rc.mustRecv(packets.Connack)
	return rc, ack.ReasonCode
}

func publishPacket(topic string, qos byte, id uint16, payload []byte) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic, PacketID: id, Payload: payload,
	}
}

func subscribePacket(id uint16, filters ...string) packets.Packet {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f})
	}
	return pk
}

// waitCounter waits (up to 10 s) for a metric that is updated after the
// client already saw the effect, e.g. after the broker closed the connection.
func waitCounter(t testing.TB, reg *prometheus.Registry, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := counter(t, reg, name, labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
