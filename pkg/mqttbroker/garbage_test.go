package mqttbroker

import (
	"bytes"
	"math/rand"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

func encoded(t testing.TB, pk packets.Packet, version byte) []byte {
	t.Helper()
	pk.ProtocolVersion = version
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestGarbageInput sends malformed and truncated input on the TCP port while
// a well-behaved client keeps using the broker.
func TestGarbageInput(t *testing.T) {
	b, reg := startBroker(t, testConfig(t))
	addr := b.Addr("tcp")
	control := mustPaho(t, "tcp://"+addr, adminName, adminPass)
	topic := "p2pd/" + newNodeID(t)
	code, ch := subscribe(t, control, topic, 1)
	if code != 1 {
		t.Fatalf("control subscribe: %#x", code)
	}

	rng := rand.New(rand.NewSource(1))
	random := make([]byte, 64*1024)
	rng.Read(random)
	conn := encoded(t, connectPacket("garbage", userName, userPass), 4)
	conn5 := encoded(t, connectPacket("garbage5", userName, userPass), 5)
	pub := encoded(t, publishPacket(topic, 1, 7, []byte("truncated payload")), 4)
	sub := encoded(t, subscribePacket(3, topic), 5)

	for _, tc := range []struct {
		name  string
		data  []byte
		leave bool // keep the connection open (a stalled sender)
	}{
		{"random bytes", random, false},
		{"random after connect", append(append([]byte{}, conn...), random[:4096]...), false},
		{"truncated connect", conn[:len(conn)/2], true},
		{"truncated connect closed", conn[:len(conn)-1], false},
		{"truncated publish", append(append([]byte{}, conn...), pub[:len(pub)-3]...), true},
		{"truncated subscribe v5", append(append([]byte{}, conn5...), sub[:len(sub)-2]...), true},
		{"huge remaining length", []byte{0x10, 0xff, 0xff, 0xff, 0x7f}, true},
		{"bad remaining length", []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x01}, false},
		{"publish before connect", pub, false},
		{"reserved packet type", []byte{0xf0, 0x00}, false},
		{"bad protocol name", []byte{0x10, 0x0c, 0x00, 0x04, 'X', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00}, false},
		{"connect twice", append(append([]byte{}, conn...), conn...), false},
		{"half a fixed header", []byte{0x30}, true},
		// Panics mochi's SUBSCRIBE decoder (options byte read past the end).
		{"short v5 subscribe", append(append([]byte{}, conn5...), 0x82, 0x06, '0', '0', 0x80, 0x00, 0x00, 0x00), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, _ = c.Write(tc.data) // the broker may hang up mid-write
			if tc.leave {
				t.Cleanup(func() { c.Close() })
			} else {
				c.Close()
			}
			msg := []byte(tc.name)
			wait(t, control.Publish(topic, 1, false, msg))
			if got := recv(t, ch); !bytes.Equal(got, msg) {
				t.Fatalf("control client got %q, want %q", got, msg)
			}
			roundTrip(t, addr)
		})
	}
	waitCounter(t, reg, 1, "mqttd_client_panics_total")
}

// FuzzConnBytes feeds arbitrary bytes to a live broker, optionally after a
// valid CONNECT, and checks after each input that a connected client still
// gets answers.
func FuzzConnBytes(f *testing.F) {
	cfg := testConfig(f)
	cfg.AllowAnonymous = true
	cfg.Limits.MaxPacketSize = 4096
	cfg.ConnectTimeout = 200 * time.Millisecond
	b, err := Start(cfg, nil, testLogger(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	addr := b.Addr("tcp")
	control, code := connectRaw(f, addr, 5, "", "")
	if code != 0 {
		f.Fatalf("control connect: %#x", code)
	}
	connect := encoded(f, connectPacket("fuzz", "", ""), 5)
	f.Add(byte(0), []byte{0x10, 0x00})
	f.Add(byte(1), encoded(f, publishPacket("p2pd/x", 1, 1, []byte("x")), 5))
	f.Add(byte(1), encoded(f, subscribePacket(1, "p2pd/#", "#"), 5))
	f.Add(byte(0), connect)
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if mode&1 == 1 {
			_, _ = c.Write(connect)
		}
		_, _ = c.Write(data)
		c.Close()
		_ = control.conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := control.conn.Write([]byte{packets.Pingreq << 4, 0}); err != nil {
			t.Fatalf("control client lost the broker: %v", err)
		}
		for {
			pk, err := control.recv()
			if err != nil {
				t.Fatalf("control client lost the broker: %v", err)
			}
			if pk.FixedHeader.Type == packets.Pingresp {
				break
			}
		}
	})
}
