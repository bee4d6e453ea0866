package mqttbroker

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// roundTrip proves a broker still serves: a fresh paho client publishes to
// itself through a signalling topic.
func roundTrip(t *testing.T, addr string) {
	t.Helper()
	c := mustPaho(t, "tcp://"+addr, userName, userPass)
	topic := "p2pd/" + newNodeID(t)
	if code, ch := subscribe(t, c, topic, 1); code != 1 {
		t.Fatalf("round trip subscribe: %#x", code)
	} else {
		wait(t, c.Publish(topic, 1, false, []byte("still here")))
		if got := recv(t, ch); string(got) != "still here" {
			t.Fatalf("round trip got %q", got)
		}
	}
}

func TestMaxClients(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxClients = 2
	b, reg := startBroker(t, cfg)
	mustPaho(t, "tcp://"+b.Addr("tcp"), userName, userPass)
	mustPaho(t, "tcp://"+b.Addr("tcp"), userName, userPass)
	for _, tc := range []struct {
		name    string
		version byte
		want    byte
	}{
		{"v3.1.1 server unavailable", 4, 0x03},
		{"v5 server busy", 5, 0x89},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, code := connectRaw(t, b.Addr("tcp"), tc.version, userName, userPass); code != tc.want {
				t.Fatalf("CONNACK %#x, want %#x", code, tc.want)
			}
		})
	}
	waitCounter(t, reg, 2, "mqttd_limit_refusals_total", "limit", LimitClients)
}

func TestMaxSubscriptions(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxSubscriptions = 2
	b, reg := startBroker(t, cfg)
	rc, code := connectRaw(t, b.Addr("tcp"), 5, userName, userPass)
	if code != 0 {
		t.Fatalf("connect: %#x", code)
	}
	a, bb, c := "p2pd/"+newNodeID(t), "p2pd/"+newNodeID(t), "p2pd/"+newNodeID(t)
	rc.send(subscribePacket(1, a, bb, c))
	ack := rc.mustRecv(packets.Suback)
	if want := []byte{0, 0, 0x87}; !bytes.Equal(ack.ReasonCodes, want) {
		t.Fatalf("SUBACK codes %#x, want %#x", ack.ReasonCodes, want)
	}
	// Subscribing again to a held filter is not a new subscription.
	rc.send(subscribePacket(2, a))
	if ack := rc.mustRecv(packets.Suback); !bytes.Equal(ack.ReasonCodes, []byte{0}) {
		t.Fatalf("re-subscribe codes %#x, want 0", ack.ReasonCodes)
	}
	if n := counter(t, reg, "mqttd_limit_refusals_total", "limit", LimitSubscriptions); n != 1 {
		t.Errorf("subscriptions refusals = %v, want 1", n)
	}
	if n := counter(t, reg, "mqttd_acl_denials_total", "action", "subscribe"); n != 0 {
		t.Errorf("a limit refusal counted as an ACL denial (%v)", n)
	}
}

func TestPublishRate(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.PublishRate = 0.001 // no refill during the test
	cfg.Limits.PublishBurst = 2
	b, reg := startBroker(t, cfg)
	topic := "p2pd/" + newNodeID(t)
	sub := mustPaho(t, "tcp://"+b.Addr("tcp"), adminName, adminPass)
	_, ch := subscribe(t, sub, topic, 1)

	t.Run("v5 QoS 1 gets quota exceeded", func(t *testing.T) {
		rc, _ := connectRaw(t, b.Addr("tcp"), 5, userName, userPass)
		var codes []byte
		for i := uint16(1); i <= 3; i++ {
			rc.send(publishPacket(topic, 1, i, []byte("v5")))
			codes = append(codes, rc.mustRecv(packets.Puback).ReasonCode)
		}
		if codes[0] >= 0x80 || codes[1] >= 0x80 || codes[2] != 0x97 {
			t.Fatalf("PUBACK codes %#x, want two successes then 0x97", codes)
		}
	})
	t.Run("v3.1.1 over the rate is dropped", func(t *testing.T) {
		pub := mustPaho(t, "tcp://"+b.Addr("tcp"), userName, userPass)
		for i := 0; i < 4; i++ {
			wait(t, pub.Publish(topic, 1, false, []byte("v3")))
		}
	})
	// 2 + 2 delivered, 1 + 2 refused; the acks above mean the broker has
	// processed every publish already.
	if n := counter(t, reg, "mqttd_limit_refusals_total", "limit", LimitPublishRate); n != 3 {
		t.Fatalf("publish_rate refusals = %v, want 3", n)
	}
	got := 0
	for got < 4 {
		recv(t, ch)
		got++
	}
	// mochi counts a message sent after its write returned, which may be
	// after the subscriber has it.
	waitCounter(t, reg, 4, "mqttd_messages_sent_total")
}

func TestMaxPacketSize(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxPacketSize = 1024
	b, reg := startBroker(t, cfg)
	rc, _ := connectRaw(t, b.Addr("tcp"), 5, userName, userPass)
	rc.send(publishPacket("p2pd/"+newNodeID(t), 0, 0, make([]byte, 2000)))
	for {
		if _, err := rc.recv(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("broker kept the connection of an oversized packet open")
			}
			break
		}
	}
	roundTrip(t, b.Addr("tcp"))
	waitCounter(t, reg, 1, "mqttd_limit_refusals_total", "limit", LimitPacketSize)
}

func TestMaxRetained(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxRetained = 1
	b, reg := startBroker(t, cfg)
	rc, _ := connectRaw(t, b.Addr("tcp"), 5, userName, userPass)
	first, second := "p2pd/"+newNodeID(t), "p2pd/"+newNodeID(t)
	for i, tc := range []struct {
		topic string
		ok    bool
	}{{first, true}, {second, false}, {first, true}} {
		pk := publishPacket(tc.topic, 1, uint16(i+1), []byte("r"))
		pk.FixedHeader.Retain = true
		rc.send(pk)
		code := rc.mustRecv(packets.Puback).ReasonCode
		if tc.ok != (code < 0x80) {
			t.Fatalf("retained publish %d: PUBACK %#x, want ok=%v", i, code, tc.ok)
		}
	}
	if n := counter(t, reg, "mqttd_limit_refusals_total", "limit", LimitRetained); n != 1 {
		t.Errorf("retained refusals = %v, want 1", n)
	}
}

func TestConnectTimeout(t *testing.T) {
	cfg := testConfig(t)
	cfg.ConnectTimeout = 100 * time.Millisecond
	b, reg := startBroker(t, cfg)
	c, err := net.Dial("tcp", b.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("broker kept a silent connection open")
	}
	if err == nil || !(errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)) {
		t.Fatalf("read: %v, want the broker to close", err)
	}
	waitCounter(t, reg, 1, "mqttd_limit_refusals_total", "limit", LimitConnectTime)
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

func TestMaxSessions(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxSessions = 1
	b, reg := startBroker(t, cfg)
	// A persistent session outlives its connection and still counts.
	rc := dialRaw(t, b.Addr("tcp"), 4)
	pk := connectPacket("keeper", userName, userPass)
	pk.Connect.Clean = false
	rc.send(pk)
	if code := rc.mustRecv(packets.Connack).ReasonCode; code != 0 {
		t.Fatalf("first session: %#x", code)
	}
	rc.conn.Close()
	if _, code := connectRaw(t, b.Addr("tcp"), 5, userName, userPass); code != 0x89 {
		t.Fatalf("second session: CONNACK %#x, want 0x89", code)
	}
	// The owner may come back to its session.
	rc = dialRaw(t, b.Addr("tcp"), 4)
	rc.send(pk)
	if ack := rc.mustRecv(packets.Connack); ack.ReasonCode != 0 || !ack.SessionPresent {
		t.Fatalf("resume: code %#x present %v", ack.ReasonCode, ack.SessionPresent)
	}
	waitCounter(t, reg, 1, "mqttd_limit_refusals_total", "limit", LimitSessions)
}

func TestSessionExpiryCapped(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.SessionExpiry = 90 * time.Second
	b, _ := startBroker(t, cfg)
	rc := dialRaw(t, b.Addr("tcp"), 5)
	pk := connectPacket("long-lived", userName, userPass)
	pk.Properties.SessionExpiryInterval = 0xFFFFFFFF
	pk.Properties.SessionExpiryIntervalFlag = true
	rc.send(pk)
	ack := rc.mustRecv(packets.Connack)
	if ack.ReasonCode != 0 || ack.Properties.SessionExpiryInterval != 90 {
		t.Fatalf("CONNACK code %#x session expiry %d, want 0 and 90", ack.ReasonCode, ack.Properties.SessionExpiryInterval)
	}
}

func TestRetainedMessageExpires(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MessageExpiry = time.Second
	b, reg := startBroker(t, cfg)
	pub := mustPaho(t, "tcp://"+b.Addr("tcp"), userName, userPass)
	wait(t, pub.Publish("p2pd/"+newNodeID(t), 1, true, []byte("short-lived")))
	if n := counter(t, reg, "mqttd_retained_messages"); n != 1 {
		t.Fatalf("retained = %v, want 1", n)
	}
	waitCounter(t, reg, 0, "mqttd_retained_messages")
}
