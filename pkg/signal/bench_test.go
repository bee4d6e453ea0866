package signal

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkSealOpen measures sealing and opening one envelope (the CPU cost
// of a signalling message at each end, without MQTT).
func BenchmarkSealOpen(b *testing.B) {
	alice, bob := mustID(b), mustID(b)
	op := NewOpener(bob, OpenerConfig{ReplaySize: 1 << 16})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		env, err := Seal(alice, bob.Public, Body{Type: TypeEcho, PipeID: strconv.Itoa(i), TTL: 30, TS: time.Now().UnixMilli()}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := op.Open(env); err != nil {
			b.Fatal(err)
		}
	}
}
