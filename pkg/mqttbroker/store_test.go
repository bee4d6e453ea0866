package mqttbroker

import (
	"path/filepath"
	"testing"
)

func TestStoreKeepsRetainedAcrossRestart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store bool
		want  bool
	}{
		{"with store", true, true},
		{"memory only", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			if tc.store {
				cfg.Store = filepath.Join(t.TempDir(), "mqttd.db")
			}
			topic := "p2pd/" + newNodeID(t)
			other := "p2pd/" + newNodeID(t)

			b, _ := startBroker(t, cfg)
			pub := mustPaho(t, "tcp://"+b.Addr("tcp"), userName, userPass)
			wait(t, pub.Publish(topic, 1, true, []byte("kept")))
			wait(t, pub.Publish(other, 1, true, []byte("kept too")))
			pub.Disconnect(0)
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}

			b2, reg := startBroker(t, cfg)
			retained := counter(t, reg, "mqttd_retained_messages")
			sub := mustPaho(t, "tcp://"+b2.Addr("tcp"), userName, userPass)
			_, ch := subscribe(t, sub, topic, 1)
			// A marker published after subscribing arrives after any retained message.
			wait(t, sub.Publish(topic, 1, false, []byte("marker")))
			first := string(recv(t, ch))
			if got := first == "kept"; got != tc.want {
				t.Fatalf("first message after restart %q; want retained=%v", first, tc.want)
			}
			if tc.want && retained < 2 {
				t.Errorf("mqttd_retained_messages = %v after restart, want >= 2", retained)
			}
		})
	}
}
