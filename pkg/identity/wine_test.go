//go:build linux

package identity

import (
	"bytes"
	"testing"

	"github.com/p2pd-go/p2pd/internal/testbin"
	"github.com/p2pd-go/p2pd/internal/winetest"
)

// TestWindowsUnderWine runs this package's tests, built for Windows, under
// Wine: the owner-only DACL on a new key, the refusal of keys others may
// read, and the %LOCALAPPDATA% default (private_windows_test.go).
func TestWindowsUnderWine(t *testing.T) {
	wine := winetest.New(t)
	exe := testbin.TestFor(t, "pkg/identity", "windows", "amd64")
	out, err := wine.Command(exe, "-test.count=1", "-test.v", "-test.run", "^(TestLoadOrCreate|TestLoadRefuses|TestLoadMissing|TestDefaultDir)$").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestLoadRefuses")) || !bytes.Contains(out, []byte("--- PASS: TestLoadOrCreate")) {
		t.Fatalf("Windows tests under Wine: %v\n%s", err, out)
	}
}
