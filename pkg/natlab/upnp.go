package natlab

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

// StartMiniupnpd runs miniupnpd (nftables build) on a NAT router, offering
// NAT-PMP/PCP (and UPnP IGD) to the router's private hosts, which may map
// ports 1024-65535 to themselves only (secure mode).
func (r *Router) StartMiniupnpd(t testing.TB) *Proc {
	t.Helper()
	testenv.RequireTools(t, "miniupnpd")
	if r.b == Open {
		t.Fatal("natlab: an open router has no NAT to map ports on")
	}
	// The chains miniupnpd fills; they hook in beside the router's own NAT.
	skeleton := `table inet miniupnpd {
  chain forward { type filter hook forward priority 0; policy accept; jump forward_upnp; }
  chain forward_upnp { }
  chain prerouting { type nat hook prerouting priority dstnat - 1; policy accept; jump prerouting_upnp; }
  chain prerouting_upnp { }
  chain postrouting { type nat hook postrouting priority srcnat - 1; policy accept; jump postrouting_upnp; }
  chain postrouting_upnp { }
}
`
	if _, err := inNS(r.ns, []byte(skeleton), "nft", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`ext_ifname=wan
ext_ip=%s
listening_ip=lan
port=0
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
uuid=3f6b1c2e-8f1a-4c55-9d6e-0a1b2c3d4e5f
upnp_table_name=miniupnpd
upnp_nat_table_name=miniupnpd
upnp_forward_chain=forward_upnp
upnp_nat_chain=prerouting_upnp
upnp_nat_postrouting_chain=postrouting_upnp
allow 1024-65535 10.0.0.0/8 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`, r.wan)
	path := filepath.Join(dir, "miniupnpd.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return r.Start(t, "miniupnpd", "-d", "-f", path, "-P", filepath.Join(dir, "miniupnpd.pid"))
}
