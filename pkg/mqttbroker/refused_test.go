package mqttbroker

import (
	"bytes"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// A message that mochi refuses to write to a client (an MQTT 5 client whose
// Maximum Packet Size it exceeds: it is discarded, [MQTT-3.1.2-25]) must
// leave nothing counted for that client. mqttd counted it as held by mochi
// until written, so --max-pending-writes / 2 of them left the connection
// congested for good, and every publish to it then waited --queue-wait; and
// mochi kept each one in the session's store, which holds a bounded number.
func TestRefusedMessageLeavesNothingCounted(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.PublishRate = 0
	cfg.Limits.MaxPendingWrites = 8
	cfg.Limits.QueueWait = time.Hour // a wait the test's read deadlines cannot sit out
	b, reg := startBroker(t, cfg)
	topic := "p2pd/" + newNodeID(t)

	sub := dialRaw(t, b.Addr("tcp"), 5)
	con := connectPacket("sub-"+newNodeID(t)[:8], userName, userPass)
	con.Properties.MaximumPacketSize = 256
	sub.send(con)
	if ack := sub.mustRecv(packets.Connack); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
	}
	s := subscribePacket(1, topic)
	s.Filters[0].Qos = 1
	sub.send(s)
	sub.mustRecv(packets.Suback)

	pub, code := connectRaw(t, b.Addr("tcp"), 5, adminName, adminPass)
	if code != 0 {
		t.Fatalf("publisher CONNACK 0x%02x", code)
	}
	publish := func(id uint16, payload []byte) {
		t.Helper()
		pub.send(publishPacket(topic, 1, id, payload))
		if ack := pub.mustRecv(packets.Puback); ack.PacketID != id || ack.ReasonCode >= 0x80 {
			t.Fatalf("PUBACK id %d code 0x%02x, want id %d success", ack.PacketID, ack.ReasonCode, id)
		}
	}
	big := bytes.Repeat([]byte{'x'}, 1024)
	for i := range cfg.Limits.MaxPendingWrites / 2 {
		publish(uint16(i+1), big)
	}
	waitCounter(t, reg, 0, "mqttd_congested_connections")
	waitCounter(t, reg, 0, "mqttd_inflight_messages")

	// The next message that fits is delivered; its publisher is not held.
	publish(100, []byte("small"))
	got := sub.mustRecv(packets.Publish)
	if string(got.Payload) != "small" {
		t.Fatalf("subscriber got %q, want the small message (the big ones are discarded)", got.Payload)
	}
	sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: got.PacketID})
	waitCounter(t, reg, 0, "mqttd_inflight_messages")
	waitCounter(t, reg, 0, "mqttd_congested_connections")
}

// A publish held for a congested subscriber goes on as soon as that
// subscriber leaves: its connection stops counting as congested when it
// closes, whatever mochi still held for it.
func TestSubscriberLeavingReleasesPublisher(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.PublishRate = 0
	cfg.Limits.MaxInflight = 1
	cfg.Limits.MaxQueued = 4
	cfg.Limits.QueueWait = time.Hour
	b, reg := startBroker(t, cfg)
	topic := "p2pd/" + newNodeID(t)

	sub, _ := connectRaw(t, b.Addr("tcp"), 5, userName, userPass)
	s := subscribePacket(1, topic)
	s.Filters[0].Qos = 1
	sub.send(s)
	sub.mustRecv(packets.Suback)
	pub, _ := connectRaw(t, b.Addr("tcp"), 5, adminName, adminPass)
	// One on the wire, unacknowledged; two behind it: half the queue.
	for id := range uint16(3) {
		pub.send(publishPacket(topic, 1, id+1, []byte("m")))
		pub.mustRecv(packets.Puback)
	}
	waitCounter(t, reg, 1, "mqttd_congested_connections")
	pub.send(publishPacket(topic, 1, 4, []byte("held")))
	sub.conn.Close()
	if ack := pub.mustRecv(packets.Puback); ack.PacketID != 4 {
		t.Fatalf("PUBACK for %d, want 4", ack.PacketID)
	}
	waitCounter(t, reg, 0, "mqttd_congested_connections")
}
