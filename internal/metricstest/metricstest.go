// Package metricstest checks a program's metrics against the project rules:
// names start with "<program>_", counters end in "_total", Prometheus' own
// lint is clean, and no label could carry a per-IP or per-user value.
package metricstest

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

var forbiddenLabels = []string{"ip", "addr", "address", "user", "username", "client", "client_id", "peer", "remote", "src", "dst"}

// Lint fails t for every metric in reg that breaks the rules. Go runtime and
// process collectors (go_, process_, promhttp_) are ignored.
func Lint(t testing.TB, reg prometheus.Gatherer, prefix string) {
	t.Helper()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatalf("metricstest: gather: %v", err)
	}
	for _, p := range problems {
		if ours(p.Metric) {
			t.Errorf("metricstest: %s: %s", p.Metric, p.Text)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("metricstest: gather: %v", err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !ours(name) {
			continue
		}
		if !strings.HasPrefix(name, prefix+"_") {
			t.Errorf("metricstest: %s: name must start with %q", name, prefix+"_")
		}
		if mf.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("metricstest: %s: counter name must end in _total", name)
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				for _, bad := range forbiddenLabels {
					if strings.EqualFold(lp.GetName(), bad) {
						t.Errorf("metricstest: %s: label %q would hold per-peer values", name, lp.GetName())
					}
				}
			}
		}
	}
}

func ours(name string) bool {
	for _, p := range []string{"go_", "process_", "promhttp_"} {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	return true
}
