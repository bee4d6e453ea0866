package mqttbroker

import (
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// BenchmarkQoS1Delivery measures one QoS 1 message from a paho publisher to
// a paho subscriber through the broker, 100 in flight, at two GC targets
// (cmd/mqttd runs with GOGC 400 unless told otherwise).
func BenchmarkQoS1Delivery(b *testing.B) {
	for _, gogc := range []int{100, 400} {
		b.Run(fmt.Sprintf("gogc=%d", gogc), func(b *testing.B) {
			defer debug.SetGCPercent(debug.SetGCPercent(gogc))
			cfg := Config{TCP: "127.0.0.1:0", AllowAnonymous: true, Limits: DefaultLimits()}
			cfg.Limits.PublishRate = 0
			br, _ := startBroker(b, cfg)
			url := "tcp://" + br.Addr("tcp")
			topic := "p2pd/" + newNodeID(b)
			got := make(chan struct{}, 1024)
			sub := mustPaho(b, url, "", "")
			wait(b, sub.Subscribe(topic, 1, func(paho.Client, paho.Message) { got <- struct{}{} }))
			pub := mustPaho(b, url, "", "")
			payload := make([]byte, 64)
			const window = 100
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			inFlight := 0
			for range b.N {
				for inFlight >= window {
					select {
					case <-got:
						inFlight--
					case <-time.After(10 * time.Second):
						b.Fatal("a delivery did not come")
					}
				}
				pub.Publish(topic, 1, false, payload)
				inFlight++
			}
			for ; inFlight > 0; inFlight-- {
				select {
				case <-got:
				case <-time.After(10 * time.Second):
					b.Fatal("a delivery did not come")
				}
			}
		})
	}
}
