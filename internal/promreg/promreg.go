// Package promreg registers a component's Prometheus collectors. It is the
// one way p2pd's packages do it: every collector or none, and an error that
// names the package instead of a panic when a registry already holds one of
// them (two servers given one registry, say).
package promreg

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers cs on reg; a nil reg registers nothing. When one
// collector fails, those registered before it are unregistered again and
// the error, prefixed with pkg (the caller's package name), wraps the
// registry's: prometheus.AlreadyRegisteredError when reg holds that
// collector or one with the same metric names already.
func Register(reg prometheus.Registerer, pkg string, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		err := reg.Register(c)
		if err == nil {
			continue
		}
		for _, done := range cs[:i] {
			reg.Unregister(done)
		}
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return fmt.Errorf("%s: metrics already registered (one per registry): %w", pkg, err)
		}
		return fmt.Errorf("%s: register metrics: %w", pkg, err)
	}
	return nil
}
