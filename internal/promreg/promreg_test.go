package promreg

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func counter(name string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: name + " help"})
}

func TestRegister(t *testing.T) {
	t.Run("nil registry registers nothing", func(t *testing.T) {
		if err := Register(nil, "x", counter("a_total")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("every collector", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		a, b := counter("a_total"), counter("b_total")
		if err := Register(reg, "x", a, b); err != nil {
			t.Fatal(err)
		}
		a.Inc()
		if n, err := testutil.GatherAndCount(reg); err != nil || n != 2 {
			t.Fatalf("gathered %d metrics (%v), want 2", n, err)
		}
	})
	t.Run("a second set on the same registry fails whole", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		if err := Register(reg, "x", counter("b_total")); err != nil {
			t.Fatal(err)
		}
		// c is new, b's name is taken: c must not stay registered.
		err := Register(reg, "stun", counter("c_total"), counter("b_total"))
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) || !strings.HasPrefix(err.Error(), "stun: metrics already registered") {
			t.Fatalf("err = %v, want stun's AlreadyRegisteredError", err)
		}
		if err := Register(reg, "x", counter("c_total")); err != nil {
			t.Fatalf("c_total was left registered by the failed call: %v", err)
		}
	})
	t.Run("a clashing collector", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		if err := Register(reg, "x", counter("d_total")); err != nil {
			t.Fatal(err)
		}
		// Same name, other help: a conflict, not the same collector twice.
		clash := prometheus.NewCounter(prometheus.CounterOpts{Name: "d_total", Help: "something else"})
		err := Register(reg, "turnserver", clash)
		var are prometheus.AlreadyRegisteredError
		if err == nil || errors.As(err, &are) || !strings.HasPrefix(err.Error(), "turnserver: register metrics: ") {
			t.Fatalf("err = %v, want turnserver's register error", err)
		}
	})
}
