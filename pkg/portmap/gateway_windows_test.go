package portmap

import (
	"errors"
	"os"
	"testing"
)

// TestDefaultGatewayWindows reads the routing table through iphlpapi. With
// P2PD_WANT_GATEWAY set (wine_test.go sets it to what netlink says on the
// Linux host Wine runs on; "none" for no default route) the answer must
// match it.
func TestDefaultGatewayWindows(t *testing.T) {
	gw, err := defaultGateway()
	if err != nil && !errors.Is(err, ErrNoGateway) {
		t.Fatal(err)
	}
	if err == nil && (!gw.Is4() || gw.IsUnspecified()) {
		t.Fatalf("gateway %s is not an IPv4 next hop", gw)
	}
	switch want := os.Getenv("P2PD_WANT_GATEWAY"); {
	case want == "":
		t.Logf("default gateway: %v (err %v)", gw, err)
	case want == "none" && err == nil:
		t.Fatalf("gateway %s, want none", gw)
	case want != "none" && (err != nil || gw.String() != want):
		t.Fatalf("gateway %v (err %v), want %s", gw, err, want)
	}
}
