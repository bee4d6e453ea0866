// Package testbin builds the project's programs for tests that run them as
// real processes (in NAT-lab namespaces, or against third-party clients).
package testbin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	built = map[string]string{}
)

// Build compiles the main package pkg (e.g. "cmd/stund", relative to the
// module root) once per test process and returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	return BuildFor(t, pkg, runtime.GOOS, runtime.GOARCH)
}

// BuildFor is Build for another OS and architecture (a Windows agent for
// Wine); the binary is named <name>-<goos>-<goarch>[.exe].
func BuildFor(t testing.TB, pkg, goos, goarch string) string {
	t.Helper()
	return build(t, pkg, goos, goarch, false)
}

// TestFor compiles the tests of package pkg for goos/goarch (go test -c),
// e.g. to run a package's Windows tests under Wine.
func TestFor(t testing.TB, pkg, goos, goarch string) string {
	t.Helper()
	return build(t, pkg, goos, goarch, true)
}

func build(t testing.TB, pkg, goos, goarch string, test bool) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	key := fmt.Sprint(pkg, " ", goos, "/", goarch, " test=", test)
	if p, ok := built[key]; ok {
		return p
	}
	// One directory per checkout, rebuilt into by every test process (the
	// Go build cache makes that cheap) and replaced atomically, so nothing
	// piles up and two checkouts tested at once never run each other's
	// binaries.
	root := moduleRoot(t)
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), "p2pd-testbin-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testbin: %v", err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	if test {
		out += ".test"
	}
	if goos != runtime.GOOS || goarch != runtime.GOARCH {
		out += "-" + goos + "-" + goarch
	}
	if goos == "windows" {
		out += ".exe"
	}
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "./"+strings.TrimPrefix(pkg, "./"))
	if test {
		cmd.Args[1] = "test"
		cmd.Args = append(cmd.Args[:2], append([]string{"-c"}, cmd.Args[2:]...)...)
	}
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("testbin: go build %s: %v\n%s", pkg, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatalf("testbin: %v", err)
	}
	built[key] = out
	return out
}

func moduleRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testbin: cannot locate the module")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Output collects a process's stdout/stderr (set both to it) and may be
// read while the process runs.
type Output struct {
	mu sync.Mutex
	b  []byte
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b = append(o.b, p...)
	return len(p), nil
}

// String is everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.b)
}
