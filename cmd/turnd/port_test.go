package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitLog waits (bounded; not a timing assertion) until out holds want.
func waitLog(t *testing.T, out *syncBuf, want string) {
	t.Helper()
	for range 400 {
		if strings.Contains(out.String(), want) {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("no %q in the output:\n%s", want, out.String())
}

// A second turnd on a port the first one serves must refuse to start, also
// with --no-tcp (where no TCP bind fails to stop it), instead of silently
// sharing the UDP port through SO_REUSEPORT.
func TestSecondTurndOnSamePortRefused(t *testing.T) {
	bin := buildTurnd(t)
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice:alice-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	args := func(extra ...string) []string {
		return append([]string{"--listen", "127.0.0.1", "--port", strconv.Itoa(port), "--admin", "",
			"--relay-bind", "127.0.0.1", "--relay-min-port", "20000", "--relay-max-port", "20100",
			"--users-file", users}, extra...)
	}
	_, out := startProc(t, nil, bin, args("--no-tcp")...)
	waitLog(t, out, "turnd serving")
	for _, extra := range [][]string{{"--no-tcp"}, nil, {"--sockets", "1", "--no-tcp"}} {
		t.Run(fmt.Sprint(extra), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			second, err := exec.CommandContext(ctx, bin, args(extra...)...).CombinedOutput()
			if err == nil || ctx.Err() != nil {
				t.Fatalf("second turnd on port %d did not refuse to start (err %v):\n%s", port, err, second)
			}
			if !strings.Contains(string(second), "in use by another process") {
				t.Fatalf("second turnd failed without saying the port is in use:\n%s", second)
			}
		})
	}
}
