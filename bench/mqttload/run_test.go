package main

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd-go/p2pd/pkg/mqttbroker"
)

// The shape of issue 12: 10 publishers -> 10 subscribers at QoS 1, each
// publisher keeping 100 publishes in flight (open loop) for 10 s. mochi
// alone lost about 1,100 messages in such a run; every one must arrive.
func TestTenToTenQoS1NothingMissing(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s load run")
	}
	lim := mqttbroker.DefaultLimits()
	lim.PublishRate = 0
	reg := prometheus.NewRegistry()
	b, err := mqttbroker.Start(mqttbroker.Config{
		TCP: "127.0.0.1:0", AllowAnonymous: true, ConnectTimeout: 10 * time.Second, Limits: lim,
	}, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r, err := run(runOpts{
		broker: "tcp://" + b.Addr("tcp"), pubs: 10, subs: 10, qos: 1,
		seconds: 10, window: 16, inflight: 100, drain: 30 * time.Second, size: 256,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deliveries %d, missing %d, duplicates %d, %.0f msgs/s", r.total, r.missing, r.duplicates, r.msgsPerS)
	if r.total == 0 || r.missing != 0 {
		t.Errorf("%d of %d deliveries missing", r.missing, r.total)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "mqttd_inflight_dropped_total", "mqttd_messages_dropped_total", "mqttd_limit_refusals_total":
			for _, m := range mf.GetMetric() {
				if v := m.GetCounter().GetValue(); v != 0 {
					t.Errorf("%s%v = %v", mf.GetName(), m.GetLabel(), v)
				}
			}
		}
	}
}

// A paced run spreads its publishers' sends over each interval unless
// -burst asks for them together.
func TestPhase(t *testing.T) {
	for _, tc := range []struct {
		name  string
		i, n  int
		burst bool
		want  time.Duration
	}{
		{"first publisher", 0, 10, false, 0},
		{"second of ten", 1, 10, false, 500 * time.Microsecond},
		{"last of ten", 9, 10, false, 4500 * time.Microsecond},
		{"burst", 9, 10, true, 0},
		{"alone", 0, 1, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := phase(tc.i, tc.n, 5*time.Millisecond, tc.burst); got != tc.want {
				t.Errorf("phase(%d, %d, 5ms, %v) = %v, want %v", tc.i, tc.n, tc.burst, got, tc.want)
			}
		})
	}
}
