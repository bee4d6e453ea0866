package mqttbroker

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/p2pd-go/p2pd/internal/testload"
)

// Close, while clients keep connecting and leaving (testload.TCP), must
// return and tell every connected MQTT 5 client why it goes: DISCONNECT
// 0x8B (server shutting down). mochi's own shutdown path could deadlock on its clients'
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
				testload.TCP(addr, func(i int) []byte { return connectBytes(fmt.Sprintf("churn-%d-%d-%d", round, w, i)) }, stop, &wg)
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

// connectBytes is an MQTT 5 CONNECT for client id.
func connectBytes(id string) []byte {
	pk := connectPacket(id, userName, userPass)
	pk.ProtocolVersion = 5
	var buf bytes.Buffer
	_ = pk.ConnectEncode(&buf)
	return buf.Bytes()
}
