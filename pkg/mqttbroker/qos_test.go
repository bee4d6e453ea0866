package mqttbroker

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

// A QoS 1 subscriber that holds back its PUBACKs while more than a window
// of messages arrives gets every message, in order, once it acknowledges
// (MQTT 3.1.1 [MQTT-4.3.2-2], MQTT 5 §4.9). mochi alone dropped the ones
// over --max-inflight (72 of 200 here) and the subscriber never knew.
func TestPubackWithholdingSubscriberGetsEveryMessage(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.PublishRate = 0
	b, reg := startBroker(t, cfg)
	window := int(cfg.Limits.MaxInflight)
	const total = 200
	topic := "p2pd/" + newNodeID(t)
	msgs := make(chan paho.Message, total)
	sub := mustPaho(t, "tcp://"+b.Addr("tcp"), userName, userPass, func(o *paho.ClientOptions) {
		o.SetAutoAckDisabled(true)
	})
	wait(t, sub.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { msgs <- m }))
	pub := mustPaho(t, "tcp://"+b.Addr("tcp"), adminName, adminPass)
	for i := range total {
		wait(t, pub.Publish(topic, 1, false, binary.BigEndian.AppendUint16(nil, uint16(i))))
	}
	next := func() paho.Message {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(20 * time.Second):
			t.Fatal("a message never arrived")
			return nil
		}
	}
	var held []paho.Message
	for range window { // the window fills; nothing is acknowledged yet
		held = append(held, next())
	}
	// The rest wait behind the full window (mochi's writer hands them over
	// asynchronously, so wait for the count).
	waitCounter(t, reg, float64(total-window), "mqttd_queued_messages")
	got := held
	for _, m := range held {
		m.Ack()
	}
	for len(got) < total {
		m := next()
		m.Ack()
		got = append(got, m)
	}
	for i, m := range got {
		if n := binary.BigEndian.Uint16(m.Payload()); int(n) != i {
			t.Fatalf("message %d carried %d: order lost", i, n)
		}
	}
	if n := counter(t, reg, "mqttd_inflight_dropped_total"); n != 0 {
		t.Fatalf("inflight dropped = %v", n)
	}
	waitCounter(t, reg, 0, "mqttd_queued_messages")
	if !sub.IsConnectionOpen() {
		t.Fatal("the subscriber was disconnected")
	}
}

// When the queue behind the window is full the session ends visibly: MQTT 5
// hears DISCONNECT 0x97 Quota exceeded, MQTT 3.1.1 sees the connection close.
func TestQueueBoundEndsSessionVisibly(t *testing.T) {
	for _, version := range []byte{4, 5} {
		t.Run(map[byte]string{4: "3.1.1", 5: "5"}[version], func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Limits.PublishRate = 0
			cfg.Limits.MaxInflight, cfg.Limits.MaxQueued = 2, 3
			cfg.Limits.QueueWait = 0 // the publisher does not wait for the stuck subscriber
			b, reg := startBroker(t, cfg)
			topic := "p2pd/" + newNodeID(t)
			rc, code := connectRaw(t, b.Addr("tcp"), version, userName, userPass)
			if code != 0 {
				t.Fatalf("CONNACK %#x", code)
			}
			sub := subscribePacket(1, topic)
			sub.Filters[0].Qos = 1
			rc.send(sub)
			rc.mustRecv(packets.Suback)
			pub := mustPaho(t, "tcp://"+b.Addr("tcp"), adminName, adminPass)
			for i := range 6 { // 2 in the window, 3 queued, one too many
				wait(t, pub.Publish(topic, 1, false, []byte{byte(i)}))
			}
			for i := range 2 {
				if pk := rc.mustRecv(packets.Publish); pk.Payload[0] != byte(i) {
					t.Fatalf("delivery %d carried %d", i, pk.Payload[0])
				}
			}
			pk, err := rc.recv()
			switch {
			case version == 5 && (err != nil || pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrQuotaExceeded.Code):
				t.Fatalf("after the queue filled: packet type %d reason %#x err %v, want DISCONNECT 0x97", pk.FixedHeader.Type, pk.ReasonCode, err)
			case version == 4 && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err):
				t.Fatalf("after the queue filled: packet type %d err %v, want the connection closed", pk.FixedHeader.Type, err)
			}
			if version == 5 {
				if _, err := rc.recv(); err == nil {
					t.Fatal("connection still open after DISCONNECT")
				}
			}
			waitCounter(t, reg, 1, "mqttd_limit_refusals_total", "limit", LimitQueued)
			waitCounter(t, reg, 0, "mqttd_queued_messages")
			if n := counter(t, reg, "mqttd_inflight_dropped_total"); n != 0 {
				t.Fatalf("inflight dropped = %v", n)
			}
		})
	}
}

// A persistent session that ended at the bound gets the messages it had not
// acknowledged when it comes back.
func TestQueuedMessagesSurviveReconnect(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.PublishRate = 0
	cfg.Limits.MaxInflight, cfg.Limits.MaxQueued = 2, 3
	cfg.Limits.QueueWait = 0
	b, _ := startBroker(t, cfg)
	topic := "p2pd/" + newNodeID(t)
	connect := func() *rawClient {
		rc := dialRaw(t, b.Addr("tcp"), 4)
		pk := connectPacket("persistent-sub", userName, userPass)
		pk.Connect.Clean = false
		rc.send(pk)
		rc.mustRecv(packets.Connack)
		return rc
	}
	rc := connect()
	sub := subscribePacket(1, topic)
	sub.Filters[0].Qos = 1
	rc.send(sub)
	rc.mustRecv(packets.Suback)
	pub := mustPaho(t, "tcp://"+b.Addr("tcp"), adminName, adminPass)
	for i := range 6 {
		wait(t, pub.Publish(topic, 1, false, []byte{byte(i)}))
	}
	for {
		if _, err := rc.recv(); err != nil {
			break // ended at the bound
		}
	}
	rc = connect()
	seen := map[byte]bool{}
	for len(seen) < 6 {
		pk := rc.mustRecv(packets.Publish)
		seen[pk.Payload[0]] = true
		ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}
		rc.send(ack)
	}
}

// A QoS 1/2 publish to $SYS/... was ignored by mochi without an answer, so
// the client waited forever. MQTT 5 gets a PUBACK / PUBREC with 0x87 Not
// authorized; MQTT 3.1.1, which cannot refuse, is disconnected.
func TestRefusedTopicPublishIsAnswered(t *testing.T) {
	b, reg := startBroker(t, testConfig(t))
	tests := []struct {
		topic string
		qos   byte
		code  byte
	}{
		{"$SYS/broker/uptime", 1, packets.ErrNotAuthorized.Code},
		{"$sys/x", 2, packets.ErrNotAuthorized.Code},
	}
	for _, tc := range tests {
		t.Run("5/"+tc.topic, func(t *testing.T) {
			rc, _ := connectRaw(t, b.Addr("tcp"), 5, adminName, adminPass)
			rc.send(publishPacket(tc.topic, tc.qos, 7, []byte("x")))
			want := packets.Puback
			if tc.qos == 2 {
				want = packets.Pubrec
			}
			pk, err := rc.recv()
			if err != nil || pk.FixedHeader.Type != want || pk.PacketID != 7 {
				t.Fatalf("got type %d id %d err %v, want type %d for id 7", pk.FixedHeader.Type, pk.PacketID, err, want)
			}
			if tc.qos == 1 {
				if pk.ReasonCode != tc.code {
					t.Fatalf("reason %#x, want %#x", pk.ReasonCode, tc.code)
				}
			}
			// The session goes on.
			rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
			rc.mustRecv(packets.Pingresp)
		})
		t.Run("3.1.1/"+tc.topic, func(t *testing.T) {
			rc, _ := connectRaw(t, b.Addr("tcp"), 4, adminName, adminPass)
			rc.send(publishPacket(tc.topic, tc.qos, 7, []byte("x")))
			if pk, err := rc.recv(); err == nil {
				t.Fatalf("got packet type %d, want the connection closed", pk.FixedHeader.Type)
			}
		})
	}
	if n := counter(t, reg, "mqttd_acl_denials_total", "action", "publish"); n < 4 {
		t.Fatalf("acl denials{publish} = %v, want >= 4", n)
	}
	// paho (3.1.1) does not hang either: its publish fails with the connection.
	pub := mustPaho(t, "tcp://"+b.Addr("tcp"), adminName, adminPass)
	tok := pub.Publish("$SYS/x", 1, false, []byte("x"))
	if !tok.WaitTimeout(20*time.Second) && pub.IsConnectionOpen() {
		t.Fatal("paho's QoS 1 publish to $SYS neither completed nor lost its connection")
	}
}

// mosquitto_pub's QoS 1 publish to $SYS ends instead of waiting forever for
// the PUBACK mochi never sent: MQTT 5 hears "not authorized", 3.1.1 loses
// its connection.
func TestMosquittoPubToSysEnds(t *testing.T) {
	testenv.RequireTools(t, "mosquitto_pub")
	b, reg := startBroker(t, testConfig(t))
	host, port := hostPort(t, b.Addr("tcp"))
	for _, v := range []string{"mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			out, err := mosq(t, "mosquitto_pub", "-h", host, "-p", port, "-u", adminName, "-P", adminPass,
				"-V", v, "-q", "1", "-t", "$SYS/broker/x", "-m", "x")
			if err != nil && (errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "signal: killed")) {
				t.Fatalf("mosquitto_pub hung: %v\n%s", err, out)
			}
			if v == "mqttv5" && !strings.Contains(strings.ToLower(out), "not authori") {
				t.Fatalf("mosquitto_pub -V 5: %v, output %q, want a not-authorized report", err, out)
			}
			if v == "mqttv311" && err == nil {
				t.Fatalf("mosquitto_pub -V 311 succeeded: %q", out)
			}
		})
	}
	// Both were refused by the broker, not by the client library.
	if n := counter(t, reg, "mqttd_acl_denials_total", "action", "publish"); n != 2 {
		t.Fatalf("acl denials{publish} = %v, want 2", n)
	}
}

// Acks of publishes that arrive in one read go out together (flowConn holds
// them while more input is buffered), and every one of them reaches the
// client whatever comes last in that read: a packet that is not
// acknowledged, one that is answered otherwise, a DISCONNECT or a publish
// that ends the connection.
func TestAcksOfOneReadAllArrive(t *testing.T) {
	b, _ := startBroker(t, testConfig(t))
	addr := b.Addr("tcp")
	topic := "p2pd/" + newNodeID(t)
	const n = 50
	for _, tc := range []struct {
		name    string
		trailer []byte
		then    byte // the packet type after the PUBACKs; 0: the connection ends
	}{
		{"QoS 0 publish last", encoded(t, publishPacket(topic, 0, 0, []byte("x")), 4), packets.Pingresp},
		{"PINGREQ last", []byte{0xc0, 0x00}, packets.Pingresp}, // its PINGRESP comes after the PUBACKs
		{"DISCONNECT last", []byte{0xe0, 0x00}, 0},
		{"refused QoS 1 publish last", encoded(t, publishPacket("chat/room", 1, n+1, []byte("x")), 4), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, _ := connectRaw(t, addr, 4, userName, userPass)
			var batch []byte
			for id := uint16(1); id <= n; id++ {
				batch = append(batch, encoded(t, publishPacket(topic, 1, id, []byte("payload")), 4)...)
			}
			batch = append(batch, tc.trailer...)
			if _, err := rc.conn.Write(batch); err != nil {
				t.Fatal(err)
			}
			for id := uint16(1); id <= n; id++ {
				if got := rc.mustRecv(packets.Puback).PacketID; got != id {
					t.Fatalf("PUBACK for %d, want %d", got, id)
				}
			}
			if tc.then != 0 {
				rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
				rc.mustRecv(tc.then) // the connection is still up
				return
			}
			for { // mochi sends a DISCONNECT first, to 3.1.1 clients too
				pk, err := rc.recv()
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("the connection stayed open")
				}
				if err != nil {
					return
				}
				if pk.FixedHeader.Type != packets.Disconnect {
					t.Fatalf("got packet type %d, want the connection closed", pk.FixedHeader.Type)
				}
			}
		})
	}
}

// Held acks count against the connection's byte bound like anything else
// not yet written; once they are written the connection is not congested
// (the gauge is what makes every publish wait for it).
func TestHeldAcksLeaveNoCongestion(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxQueuedBytes = 100 // 13 PUBACKs (52 bytes) are over half of it
	b, reg := startBroker(t, cfg)
	topic := "p2pd/" + newNodeID(t)
	rc, _ := connectRaw(t, b.Addr("tcp"), 4, userName, userPass)
	var batch []byte
	for id := uint16(1); id <= 13; id++ {
		batch = append(batch, encoded(t, publishPacket(topic, 1, id, []byte("x")), 4)...)
	}
	batch = append(batch, encoded(t, publishPacket(topic, 0, 0, []byte("x")), 4)...)
	if _, err := rc.conn.Write(batch); err != nil {
		t.Fatal(err)
	}
	for range 13 {
		rc.mustRecv(packets.Puback)
	}
	waitCounter(t, reg, 0, "mqttd_congested_connections")
}
