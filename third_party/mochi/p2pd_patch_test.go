package mqtt

// Tests of the p2pd patches (PATCHES.md).

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// With an unbuffered write queue (MaximumClientWritesPending 0) a client
// keeps a writer for as long as it is connected: the queue takes a packet
// only while one waits on it, and the on-demand writer would start only
// after a packet was taken (found by review: every publish was dropped).
func TestUnbufferedOutboundDelivers(t *testing.T) {
	cc := NewDefaultServerCapabilities()
	cc.MaximumMessageExpiryInterval = 0
	cc.ReceiveMaximum = 0
	cc.MaximumClientWritesPending = 0
	s := New(&Options{Logger: logger, Capabilities: cc})
	_ = s.AddHook(new(AllowHook), nil)
	defer s.Close()

	r, w := net.Pipe()
	defer w.Close()
	go func() { _ = s.EstablishConnection("tcp", r) }()
	got := make(chan []byte, 16)
	go func() {
		for {
			b := make([]byte, 256)
			n, err := w.Read(b)
			if err != nil {
				return
			}
			got <- b[:n]
		}
	}()
	_, _ = w.Write(packets.TPacketData[packets.Connect].Get(packets.TConnectClean).RawBytes)
	<-got // CONNACK

	id := packets.TPacketData[packets.Connect].Get(packets.TConnectClean).Packet.Connect.ClientIdentifier
	var cl *Client
	for i := 0; i < 100; i++ {
		if c, ok := s.Clients.Get(id); ok {
			cl = c
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if cl == nil {
		t.Fatal("client not connected")
	}
	sub := packets.Subscription{Filter: "a/b/c"}
	s.Topics.Subscribe(cl.ID, sub)
	cl.State.Subscriptions.Add(sub.Filter, sub)
	time.Sleep(50 * time.Millisecond) // idle

	s.publishToSubscribers(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   "a/b/c", Payload: []byte("hi"),
	})
	select {
	case <-got:
	case <-time.After(time.Second):
		t.Fatalf("publish to an idle client not delivered; MessagesDropped=%d", atomic.LoadInt64(&s.Info.MessagesDropped))
	}
}
