// Package natlab builds throw-away test networks out of Linux network
// namespaces, veth pairs and nftables: a flat "WAN" segment, server hosts with
// any number of IPv4 and IPv6 addresses, and NAT routers with chosen RFC 4787
// behaviours in front of private hosts. Links can get delay, loss and a rate
// limit. Everything a lab creates lives in namespaces named
// p2lab-<pid>-<id>-<name>, none of which is ever linked to the host's own
// network, and all of it is removed when the test ends.
//
// Tests need root, iproute2 and nftables; New skips the test otherwise (and
// fails it under CI=true, see internal/testenv).
package natlab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

// The lab's WAN prefixes (documentation ranges: never routed anywhere).
var (
	WANPrefix4 = netip.MustParsePrefix("203.0.113.0/24")
	WANPrefix6 = netip.MustParsePrefix("2001:db8::/64")
	// PublicWAN4 is a non-reserved /24 for Options.WAN4, for labs whose
	// software refuses reserved external addresses (miniupnpd). Like every
	// lab address it exists only on the lab's own isolated bridge.
	PublicWAN4 = netip.MustParsePrefix("198.20.113.0/24")
)

const nsPrefix = "p2lab-"

// Lab is one test network. Create it with New; it is torn down by t.Cleanup.
type Lab struct {
	t      testing.TB
	prefix string // p2lab-<pid>-<id>-
	inet   string // namespace holding the WAN bridge

	wan4 netip.Prefix

	mu      sync.Mutex
	nss     []string
	used    map[netip.Addr]bool
	next4   netip.Addr
	next6   netip.Addr
	links   int
	routers int
	relays  []*relay
	netem   *bool

	// IPv6 routing to v6 routers' /64s (router6.go).
	route6Mu sync.Mutex
	wan6NS   []string // WAN namespaces with an IPv6 address
	routes6  []route6
}

// New creates an empty lab with its WAN segment. It removes leftovers of
// crashed earlier runs (namespaces whose creating process is gone).
func New(t testing.TB) *Lab {
	t.Helper()
	return NewWithOptions(t, Options{})
}

// Options configure a lab.
type Options struct {
	// WAN4 replaces WANPrefix4 as the lab's IPv4 WAN (a /24). Use it only
	// for software that refuses reserved external addresses (miniupnpd
	// does); the WAN is a bridge inside the lab, linked to nothing.
	WAN4 netip.Prefix
}

// NewWithOptions is New with options.
func NewWithOptions(t testing.TB, opts Options) *Lab {
	t.Helper()
	wan4 := WANPrefix4
	if opts.WAN4.IsValid() {
		if !opts.WAN4.Addr().Is4() || opts.WAN4.Bits() != 24 {
			t.Fatalf("natlab: WAN4 %s must be an IPv4 /24", opts.WAN4)
		}
		wan4 = opts.WAN4.Masked()
	}
	if runtime.GOOS != "linux" {
		// Not a missing prerequisite make deps could install: a plain skip.
		t.Skipf("natlab: needs Linux network namespaces, not %s", runtime.GOOS)
	}
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "nft", "tc")
	removeLeftovers(t)

	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("natlab: %v", err)
	}
	l := &Lab{
		t:      t,
		prefix: fmt.Sprintf("%s%d-%s-", nsPrefix, os.Getpid(), hex.EncodeToString(b[:])),
		used:   map[netip.Addr]bool{},
		wan4:   wan4,
		next4:  nthAddr(wan4, 10),
		next6:  netip.MustParseAddr("2001:db8::10"),
	}
	t.Cleanup(l.close)
	l.inet = l.addNS("inet")
	l.must(run("ip", "-n", l.inet, "link", "add", "wan", "type", "bridge"))
	l.must(run("ip", "-n", l.inet, "link", "set", "wan", "up"))
	return l
}

func (l *Lab) must(err error) {
	l.t.Helper()
	if err != nil {
		l.t.Fatal(err)
	}
}

// addNS creates namespace prefix+name with loopback up and DAD off.
func (l *Lab) addNS(name string) string {
	l.t.Helper()
	ns := l.prefix + name
	l.must(run("ip", "netns", "add", ns))
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	l.must(run("ip", "-n", ns, "link", "set", "lo", "up"))
	_, err := inNS(ns, nil, "sysctl", "-qw",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
		"net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0")
	l.must(err)
	return ns
}

// close stops relays and deletes every namespace of the lab.
func (l *Lab) close() {
	l.mu.Lock()
	relays, nss := l.relays, l.nss
	l.relays, l.nss = nil, nil
	l.mu.Unlock()
	for _, r := range relays {
		r.close()
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if err := run("ip", "netns", "del", nss[i]); err != nil {
			l.t.Errorf("natlab: cleanup: %v", err)
		}
	}
}

// removeLeftovers deletes lab namespaces whose creating process has exited,
// and kills what still runs in them: a test binary that was killed or timed
// out leaves the servers it started (stund, mqttd, turnd) running there.
func removeLeftovers(t testing.TB) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, nsPrefix) {
			continue
		}
		pidText, _, _ := strings.Cut(strings.TrimPrefix(name, nsPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || processAlive(pid) {
			continue
		}
		if pids, err := output(nil, "ip", "netns", "pids", name); err == nil {
			for _, f := range strings.Fields(pids) {
				if p, err := strconv.Atoi(f); err == nil {
					t.Logf("natlab: killing %d, left running in %s", p, name)
					killProcess(p)
				}
			}
		}
		if err := run("ip", "netns", "del", name); err != nil {
			t.Logf("natlab: removing leftover %s: %v", name, err)
		}
	}
}

// Namespaces lists the namespaces this lab created (for diagnostics).
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.nss...)
}

// alloc returns the next free WAN address of the family of ref.
func (l *Lab) alloc(v6 bool) netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := &l.next4
	if v6 {
		next = &l.next6
	}
	for l.used[*next] {
		*next = next.Next()
	}
	a := *next
	l.used[a] = true
	*next = a.Next()
	return a
}

// reserve marks explicitly chosen WAN addresses as used.
func (l *Lab) reserve(a netip.Addr) error {
	if !l.wan4.Contains(a) && !WANPrefix6.Contains(a) {
		return fmt.Errorf("natlab: %s is outside the lab WAN prefixes %s and %s", a, l.wan4, WANPrefix6)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.used[a] {
		return fmt.Errorf("natlab: address %s already in use in this lab", a)
	}
	l.used[a] = true
	return nil
}

// addAddr assigns a WAN or LAN address to dev in ns.
func addAddr(ns, dev string, a netip.Addr, bits int) error {
	args := []string{"-n", ns, "addr", "add", fmt.Sprintf("%s/%d", a, bits), "dev", dev}
	if a.Is6() {
		args = append(args, "nodad")
	}
	return run("ip", args...)
}

func wanBits(a netip.Addr) int {
	if a.Is6() {
		return WANPrefix6.Bits()
	}
	return 24
}

// nthAddr is the n-th address of prefix p.
func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for i := 0; i < n; i++ {
		a = a.Next()
	}
	return a
}

// AddServer adds a host on the WAN with the given addresses (inside
// WANPrefix4/WANPrefix6). With no addresses it gets one of each family.
func (l *Lab) AddServer(name string, addrs ...netip.Addr) *Host {
	l.t.Helper()
	return l.AddServerLink(name, Link{}, addrs...)
}

// AddServerLink is AddServer with a shaped link to the WAN.
func (l *Lab) AddServerLink(name string, link Link, addrs ...netip.Addr) *Host {
	l.t.Helper()
	if len(addrs) == 0 {
		addrs = []netip.Addr{l.alloc(false), l.alloc(true)}
	} else {
		for _, a := range addrs {
			l.must(l.reserve(a))
		}
	}
	h := &Host{lab: l, name: name, ns: l.addNS(name)}
	l.must(l.connectWAN(h.ns, "eth0", link))
	for _, a := range addrs {
		l.must(addAddr(h.ns, "eth0", a, wanBits(a)))
	}
	h.addrs = addrs
	if hasV6(addrs) {
		l.must(l.joinWAN6(h.ns, netip.Prefix{}, netip.Addr{}))
	}
	return h
}

// AllocWAN returns n4 free IPv4 and n6 free IPv6 WAN addresses, for servers
// that need several (stund needs two per family).
func (l *Lab) AllocWAN(n4, n6 int) []netip.Addr {
	var out []netip.Addr
	for i := 0; i < n4; i++ {
		out = append(out, l.alloc(false))
	}
	for i := 0; i < n6; i++ {
		out = append(out, l.alloc(true))
	}
	l.mu.Lock()
	for _, a := range out {
		delete(l.used, a) // AddServer reserves them again
	}
	l.mu.Unlock()
	return out
}
