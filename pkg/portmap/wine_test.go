//go:build linux

package portmap

import (
	"bytes"
	"errors"
	"testing"

	"github.com/p2pd-go/p2pd/internal/testbin"
	"github.com/p2pd-go/p2pd/internal/winetest"
)

// TestWindowsGatewayUnderWine runs the Windows gateway lookup
// (GetIpForwardTable2) under Wine, which serves it from this host's routing
// table, and checks it finds the gateway netlink finds.
func TestWindowsGatewayUnderWine(t *testing.T) {
	want := "none"
	if gw, err := defaultGateway(); err == nil {
		want = gw.String()
	} else if !errors.Is(err, ErrNoGateway) {
		t.Fatal(err)
	}
	wine := winetest.New(t)
	exe := testbin.TestFor(t, "pkg/portmap", "windows", "amd64")
	cmd := wine.Command(exe, "-test.count=1", "-test.v", "-test.run", "^TestDefaultGatewayWindows$")
	cmd.Env = append(cmd.Env, "P2PD_WANT_GATEWAY="+want)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestDefaultGatewayWindows")) {
		t.Fatalf("Windows gateway lookup under Wine (want %s): %v\n%s", want, err, out)
	}
}
