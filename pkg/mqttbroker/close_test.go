package mqttbroker

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Close, while clients keep connecting and leaving, must return and tell
// every connected MQTT 5 client why it goes: DISCONNECT 0x8B (server
// shutting down). mochi's own shutdown path could deadlock on its clients'
// lock when a client connected or left at that moment (see
// hook.disconnectListener).
func TestCloseTellsClientsUnderChurn(t *testing.T) {
	for round := range 5 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			b, _ := startBroker(t, testConfig(t))
			addr := b.Addr("tcp")
			var held []*rawClient
			for i := range 4 {
				rc := dialRaw(t, addr, 5)
				rc.send(connectPacket(fmt.Sprintf("held-%d-%d", round, i), userName, userPass))
				if ack := rc.mustRecv(packets.Connack); ack.ReasonCode != 0 {
					t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
				}
				held = append(held, rc)
			}

			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					churn(addr, fmt.Sprintf("churn-%d-%d", round, w), stop)
				}()
			}
			time.Sleep(time.Duration(10+round*10) * time.Millisecond)

			closed := make(chan error, 1)
			go func() { closed <- b.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Fatalf("Close: %v", err)
				}
			case <-time.After(20 * time.Second): // a hang, not a slow close
				t.Fatal("Close did not return while clients connected and left")
			}
			close(stop)
			wg.Wait()

			for i, rc := range held {
				pk, err := rc.recv()
				if err != nil {
					t.Fatalf("client %d: no DISCONNECT before the connection closed: %v", i, err)
				}
				if pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrServerShuttingDown.Code {
					t.Errorf("client %d: packet type %d reason 0x%02x, want DISCONNECT 0x%02x",
						i, pk.FixedHeader.Type, pk.ReasonCode, packets.ErrServerShuttingDown.Code)
				}
			}
		})
	}
}

// churn connects, waits for the CONNACK and leaves, over and over, until
// stop closes or the broker stops answering.
func churn(addr, id string, stop <-chan struct{}) {
	pk := connectPacket(id, userName, userPass)
	pk.ProtocolVersion = 5
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		return
	}
	ack := make([]byte, 64)
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Write(buf.Bytes())
		_, _ = c.Read(ack)
		c.Close()
	}
}
