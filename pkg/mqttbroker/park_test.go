//go:build linux

package mqttbroker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Idle clients park: their read loops give up their goroutines (park.go),
// and a parked client still gets what is published to it, is answered when
// it sends, and parks again.
func TestIdleClientsPark(t *testing.T) {
	b, reg := startBroker(t, testConfig(t))
	addr := b.Addr("tcp")
	const n = 40
	before := runtime.NumGoroutine()
	clients := make([]*rawClient, n)
	topics := make([]string, n)
	for i := range clients {
		rc, code := connectRaw(t, addr, 5, adminName, adminPass)
		if code != 0 {
			t.Fatalf("connect %d: %#x", i, code)
		}
		topics[i] = "p2pd/" + newNodeID(t)
		rc.send(subscribePacket(1, topics[i]))
		if ack := rc.mustRecv(packets.Suback); len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != 0 {
			t.Fatalf("subscribe %d: %v", i, ack.ReasonCodes)
		}
		clients[i] = rc
	}
	waitCounter(t, reg, n, "mqttd_parked_connections")
	if g := runtime.NumGoroutine() - before; g > n/4 {
		t.Fatalf("%d goroutines more with %d parked clients", g, n)
	}

	pub, _ := connectRaw(t, addr, 5, adminName, adminPass)
	for i, rc := range clients {
		msg := []byte(fmt.Sprintf("to %d", i))
		pub.send(publishPacket(topics[i], 1, uint16(i+1), msg))
		pub.mustRecv(packets.Puback)
		got := rc.mustRecv(packets.Publish)
		if !bytes.Equal(got.Payload, msg) {
			t.Fatalf("client %d got %q, want %q", i, got.Payload, msg)
		}
		rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: got.PacketID})
		rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		rc.mustRecv(packets.Pingresp)
	}
	// Every subscriber has spoken, so every read loop ran again; the
	// publisher is the one more that parks once it is idle.
	waitCounter(t, reg, n+1, "mqttd_parked_connections")
	if d := counter(t, reg, "mqttd_inflight_messages"); d != 0 {
		t.Fatalf("%v messages still inflight after every PUBACK", d)
	}
	// The deliveries started a writer goroutine per subscriber; idle, they
	// end too (mochi's idle clock ticks each second).
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine()-before > n/4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines more with %d idle clients that were sent to", runtime.NumGoroutine()-before, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// What ends a connection ends a parked one just the same: its keepalive
// running out, the client hanging up (both publish its will), a second
// connection with its client id, malformed input that panics mochi's
// decoder, and the broker closing.
func TestParkedClientsEnd(t *testing.T) {
	b, reg := startBroker(t, testConfig(t))
	addr := b.Addr("tcp")
	// Each client's will goes to a topic of its own, which the watcher
	// subscribed to (signalling topics take no wildcards).
	wills := map[string]string{}
	watcher, _ := connectRaw(t, addr, 5, adminName, adminPass)
	for i, id := range []string{"ka", "hup", "twice", "panic", "last"} {
		wills[id] = "p2pd/" + newNodeID(t)
		watcher.send(subscribePacket(uint16(i+1), wills[id]))
		if ack := watcher.mustRecv(packets.Suback); ack.ReasonCodes[0] != 0 {
			t.Fatalf("subscribe: %v", ack.ReasonCodes)
		}
	}

	// parked connects a client with a will and waits until the count of
	// parked connections has grown by more.
	parked := func(t *testing.T, id string, keepalive uint16, more float64) *rawClient {
		t.Helper()
		want := counter(t, reg, "mqttd_parked_connections") + more
		rc := dialRaw(t, addr, 5)
		pk := connectPacket(id, adminName, adminPass)
		pk.Connect.Keepalive = keepalive
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, wills[id], []byte(id)
		rc.send(pk)
		if code := rc.mustRecv(packets.Connack).ReasonCode; code != 0 {
			t.Fatalf("connect: %#x", code)
		}
		waitCounter(t, reg, want, "mqttd_parked_connections")
		return rc
	}
	will := func(t *testing.T, id string) {
		t.Helper()
		got := watcher.mustRecv(packets.Publish)
		if got.TopicName != wills[id] {
			t.Fatalf("watcher got %s, want the will of %s", got.TopicName, id)
		}
	}
	closed := func(t *testing.T, rc *rawClient) packets.Packet {
		t.Helper()
		for {
			pk, err := rc.recv()
			if errors.Is(err, io.EOF) {
				return pk
			}
			if err != nil {
				t.Fatalf("want the connection closed: %v", err)
			}
			if pk.FixedHeader.Type == packets.Disconnect {
				last := pk
				if _, err := rc.recv(); !errors.Is(err, io.EOF) {
					t.Fatalf("after DISCONNECT: %v, want EOF", err)
				}
				return last
			}
		}
	}

	t.Run("keepalive", func(t *testing.T) {
		rc := parked(t, "ka", 1, 1) // 1.5 s without a packet ends it
		start := time.Now()
		closed(t, rc)
		if time.Since(start) > 10*time.Second {
			t.Fatalf("closed after %v", time.Since(start))
		}
		will(t, "ka")
	})
	t.Run("client hangs up", func(t *testing.T) {
		rc := parked(t, "hup", 60, 1)
		rc.conn.Close()
		will(t, "hup")
	})
	t.Run("taken over", func(t *testing.T) {
		rc := parked(t, "twice", 60, 1)
		again := parked(t, "twice", 60, 0) // the first one is gone
		if pk := closed(t, rc); pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrSessionTakenOver.Code {
			t.Fatalf("first connection ended with %+v, want DISCONNECT %#x", pk.FixedHeader, packets.ErrSessionTakenOver.Code)
		}
		again.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		again.mustRecv(packets.Pingresp)
	})
	t.Run("input that panics the decoder", func(t *testing.T) {
		rc := parked(t, "panic", 60, 1)
		panics := counter(t, reg, "mqttd_client_panics_total")
		// A short MQTT 5 SUBSCRIBE (see TestGarbageInput).
		if _, err := rc.conn.Write([]byte{0x82, 0x06, '0', '0', 0x80, 0x00, 0x00, 0x00}); err != nil {
			t.Fatal(err)
		}
		closed(t, rc)
		waitCounter(t, reg, panics+1, "mqttd_client_panics_total")
	})
	t.Run("broker closes", func(t *testing.T) {
		rc := parked(t, "last", 60, 1)
		done := make(chan error, 1)
		go func() { done <- b.Close() }()
		if pk := closed(t, rc); pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrServerShuttingDown.Code {
			t.Fatalf("ended with %+v, want DISCONNECT %#x", pk.FixedHeader, packets.ErrServerShuttingDown.Code)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return with a parked client")
		}
		waitCounter(t, reg, 0, "mqttd_parked_connections")
	})
}

func parkSizes(b *Broker) (conns, watched, tracked int) {
	b.park.mu.Lock()
	conns, watched = len(b.park.conns), len(b.park.watched)
	b.park.mu.Unlock()
	l := b.listeners["tcp"]
	l.mu.Lock()
	tracked = len(l.conns)
	l.mu.Unlock()
	return
}

// Clients that ping at intervals near their keepalive deadline, across the
// sweep's wake-ups: none may be disconnected (a past deadline left behind,
// or a wake-up taken for a timeout, would end one).
func TestParkedPingsAcrossSweeps(t *testing.T) {
	b, _ := startBroker(t, testConfig(t))
	addr := b.Addr("tcp")
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		rc := dialRaw(t, addr, 5)
		pk := connectPacket(fmt.Sprintf("ping-%d", i), adminName, adminPass)
		pk.Connect.Keepalive = 4 // deadline 6 s after each packet
		rc.send(pk)
		rc.mustRecv(packets.Connack)
		wg.Add(1)
		go func(i int, rc *rawClient) {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(i)))
			for k := 0; k < 4; k++ {
				// 0.8-4.5 s: across one or two sweeps, well inside the deadline.
				time.Sleep(time.Duration(800+r.Intn(3700)) * time.Millisecond)
				var err error
				func() {
					defer func() {
						if x := recover(); x != nil {
							err = fmt.Errorf("%v", x)
						}
					}()
					rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
				}()
				if err == nil {
					var pk packets.Packet
					pk, err = rc.recv()
					if err == nil && pk.FixedHeader.Type != packets.Pingresp {
						err = fmt.Errorf("got type %d", pk.FixedHeader.Type)
					}
				}
				if err != nil {
					errs <- fmt.Errorf("client %d ping %d: %v", i, k, err)
					return
				}
			}
		}(i, rc)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Subscribers that are parked get QoS 0 bursts with pauses long enough for
// mochi's writer to end between them; every message must arrive. Then the
// clients go away by several paths and every map entry must go.
func TestParkedDeliveryAndCleanup(t *testing.T) {
	b, reg := startBroker(t, testConfig(t))
	addr := b.Addr("tcp")
	before := runtime.NumGoroutine()
	const n = 20
	subs := make([]*rawClient, n)
	topics := make([]string, n)
	for i := range subs {
		rc := dialRaw(t, addr, 5)
		rc.send(connectPacket(fmt.Sprintf("sub-%d", i), adminName, adminPass))
		rc.mustRecv(packets.Connack)
		topics[i] = "p2pd/" + newNodeID(t)
		rc.send(subscribePacket(1, topics[i]))
		rc.mustRecv(packets.Suback)
		subs[i] = rc
	}
	pub, _ := connectRaw(t, addr, 5, adminName, adminPass)
	waitCounter(t, reg, n+1, "mqttd_parked_connections")
	for round := 0; round < 3; round++ {
		for i := range subs {
			for k := 0; k < 5; k++ {
				pub.send(publishPacket(topics[i], 0, 0, []byte(fmt.Sprintf("%d/%d", round, k))))
			}
		}
		for i, rc := range subs {
			for k := 0; k < 5; k++ {
				got := rc.mustRecv(packets.Publish)
				if want := fmt.Sprintf("%d/%d", round, k); string(got.Payload) != want {
					t.Fatalf("sub %d got %q want %q", i, got.Payload, want)
				}
			}
		}
		time.Sleep(2500 * time.Millisecond) // writers idle out, loops park
	}
	// End them: half hang up, a quarter are taken over, the rest stay.
	for i := 0; i < n/2; i++ {
		subs[i].conn.Close()
	}
	for i := n / 2; i < 3*n/4; i++ {
		rc := dialRaw(t, addr, 5)
		rc.send(connectPacket(fmt.Sprintf("sub-%d", i), adminName, adminPass))
		rc.mustRecv(packets.Connack)
		rc.conn.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, w, tr := parkSizes(b)
		// left: n/4 subscribers and the publisher
		if tr == n/4+1 && c == n/4+1 && w <= n/4+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("parked=%d watched=%d tracked=%d, want %d each", c, w, tr, n/4+1)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 3 * n / 4; i < n; i++ {
		subs[i].conn.Close()
	}
	pub.conn.Close()
	deadline = time.Now().Add(10 * time.Second)
	for {
		c, w, tr := parkSizes(b)
		g := runtime.NumGoroutine() - before
		if c == 0 && w == 0 && tr == 0 && g <= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after all clients left: parked=%d watched=%d tracked=%d goroutines+%d", c, w, tr, g)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
