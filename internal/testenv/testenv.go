// Package testenv gates tests on what the machine provides (root, external
// tools) and turns a skip into a failure under CI, where everything the tests
// need is installed by `make deps`. TCPPair gives tests both ends of a real
// loopback TCP connection.
package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where a missing
// prerequisite is a failure rather than a reason to skip.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// skip skips the test naming what is missing, or fails it under CI.
func skip(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("testenv: %s (CI=true: a skipped test is a failure; run `make deps`)", what)
	}
	t.Skipf("testenv: %s", what)
}

// RequireRoot skips (or fails under CI) when the test does not run as root.
// In -short mode it always skips: short runs are the no-root subset.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("testenv: needs root; skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		skip(t, "needs root")
	}
}

// RequireTools skips (or fails under CI) unless every named program is on PATH.
// It returns their resolved paths in order.
func RequireTools(t testing.TB, names ...string) []string {
	t.Helper()
	if testing.Short() {
		t.Skipf("testenv: needs %s; skipped in -short mode", strings.Join(names, ", "))
	}
	paths := make([]string, 0, len(names))
	var missing []string
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			missing = append(missing, n)
			continue
		}
		paths = append(paths, p)
	}
	if len(missing) > 0 {
		skip(t, "missing tools: "+strings.Join(missing, ", "))
	}
	return paths
}

// RequireDocker skips (or fails under CI) unless a Docker engine answers and
// the docker compose v2 plugin is installed. In -short mode it always skips.
func RequireDocker(t testing.TB) {
	t.Helper()
	RequireTools(t, "docker")
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		skip(t, "the Docker engine does not answer: "+strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		skip(t, "docker compose v2 plugin missing: "+strings.TrimSpace(string(out)))
	}
}
