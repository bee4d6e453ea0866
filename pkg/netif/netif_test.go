package netif

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/p2pd-go/p2pd/pkg/natlab"
)

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

// natTable resolves like a NAT would: private sources appear as 203.0.113.1,
// public ones as themselves, and one address is unreachable.
var natTable = ResolverFunc(func(_ context.Context, local netip.Addr) (netip.Addr, error) {
	switch {
	case local == netip.MustParseAddr("198.51.100.99"):
		return netip.Addr{}, errors.New("no STUN answer")
	case local.IsPrivate() && local.Is4():
		return netip.MustParseAddr("203.0.113.1"), nil
	}
	return local, nil
})

func TestBuildRoutes(t *testing.T) {
	tests := []struct {
		name    string
		addrs   []netip.Prefix
		want4   [][2]string // first NIC, ext
		want6   [][2]string
		nic4    []int // NIC count per v4 route
		ll      int   // link-locals on each v6 route
		wantErr string
	}{
		{
			name:  "private grouped, public each own",
			addrs: pfx("192.168.1.5/24", "10.0.0.7/8", "198.51.100.7/24", "198.51.100.8/24"),
			want4: [][2]string{{"198.51.100.7", "198.51.100.7"}, {"198.51.100.8", "198.51.100.8"}, {"192.168.1.5", "203.0.113.1"}},
			nic4:  []int{1, 1, 2},
		},
		{
			name:  "ipv6 globals each own, link-locals shared",
			addrs: pfx("fe80::1/64", "fd00::5/64", "2001:db8::5/64", "2001:db8::6/64"),
			want6: [][2]string{{"2001:db8::5", "2001:db8::5"}, {"2001:db8::6", "2001:db8::6"}},
			ll:    2,
		},
		{
			name:    "failed resolution is reported, others kept",
			addrs:   pfx("198.51.100.99/24", "198.51.100.7/24"),
			want4:   [][2]string{{"198.51.100.7", "198.51.100.7"}},
			nic4:    []int{1},
			wantErr: "198.51.100.99",
		},
		{name: "loopback and multicast ignored", addrs: pfx("127.0.0.1/8", "::1/128")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := BuildRoutes(context.Background(), NIC{Name: "eth0", Addrs: tt.addrs}, natTable)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
			check := func(af int, want [][2]string) {
				if len(rs[af]) != len(want) {
					t.Fatalf("af %d: %d routes, want %d: %+v", af, len(rs[af]), len(want), rs[af])
				}
				for i, w := range want {
					r := rs[af][i]
					if r.NICIP().String() != w[0] || r.ExtIP().String() != w[1] {
						t.Errorf("af %d route %d: %s -> %s, want %s -> %s", af, i, r.NICIP(), r.ExtIP(), w[0], w[1])
					}
					if af == AF4 && len(r.NIC) != tt.nic4[i] {
						t.Errorf("route %d has %d NIC addresses, want %d", i, len(r.NIC), tt.nic4[i])
					}
					if af == AF6 && len(r.LinkLocal) != tt.ll {
						t.Errorf("route %d has %d link-locals, want %d", i, len(r.LinkLocal), tt.ll)
					}
					if r.Public() != (w[0] == w[1]) {
						t.Errorf("route %d public=%v", i, r.Public())
					}
				}
			}
			check(AF4, tt.want4)
			check(AF6, tt.want6)
		})
	}
}

func TestInterfaceJSON(t *testing.T) {
	rs, err := BuildRoutes(context.Background(), NIC{Name: "eth0", Addrs: pfx("192.168.21.21/24", "fe80::1/64", "2001:db8::5/64")}, natTable)
	if err != nil {
		t.Fatal(err)
	}
	in := Interface{Name: "eth0", Index: 0, OSIndex: 2, MAC: "02:00:00:00:00:01", IsDefault: map[int]bool{AF4: true, AF6: false},
		NAT:    NAT{Type: 5, Info: "restrict port", Delta: Delta{Type: 2}, DeltaInfo: "equal delta", Mapping: "endpoint-independent", Filtering: "address-and-port-dependent"},
		Routes: rs}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	rp := generic["rp"].(map[string]any)
	r4 := rp["2"].([]any)[0].(map[string]any)
	if ext := r4["ext_ips"].([]any)[0].(map[string]any); ext["ip"] != "203.0.113.1" || ext["cidr"] != 32.0 || ext["af"] != 2.0 {
		t.Errorf("ext_ips: %v", ext)
	}
	if _, ok := rp["10"]; !ok {
		t.Errorf("no AF 10 key: %s", b)
	}
	var out Interface
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n in %+v\nout %+v", in, out)
	}
}

func TestInterfaceJSONErrors(t *testing.T) {
	tests := map[string]string{
		`{"rp":{"23":[]}}`: "rp key",
		`{"rp":{"2":[{"af":2,"nic_ips":[{"ip":"::1","cidr":128}],"ext_ips":[{"ip":"1.2.3.4","cidr":32}]}]}}`:    "not address family 2",
		`{"rp":{"2":[{"af":2,"nic_ips":[{"ip":"1.2.3.4","cidr":33}],"ext_ips":[{"ip":"1.2.3.4","cidr":32}]}]}}`: "cidr 33",
		`{"rp":{"2":[{"af":2,"nic_ips":[],"ext_ips":[]}]}}`:                                                     "at least one",
		`{"rp":{"2":[{"af":2,"nic_ips":[{"ip":"x","cidr":1}]}]}}`:                                               "nic_ips[0]",
		`{"is_default":{"7":true}}`: "is_default key",
		`[]`:                        "netif: interface",
	}
	for in, want := range tests {
		t.Run(want, func(t *testing.T) {
			var i Interface
			err := json.Unmarshal([]byte(in), &i)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v, want %q", err, want)
			}
		})
	}
}

func FuzzInterfaceJSON(f *testing.F) {
	f.Add([]byte(`{"name":"eth0","rp":{"2":[{"af":2,"nic_ips":[{"ip":"10.0.0.1","cidr":24}],"ext_ips":[{"ip":"1.2.3.4","cidr":32}]}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var i Interface
		if err := json.Unmarshal(b, &i); err != nil {
			return
		}
		out, err := json.Marshal(i)
		if err != nil {
			t.Fatalf("accepted input does not marshal: %v", err)
		}
		var again Interface
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("own output rejected: %v\n%s", err, out)
		}
	})
}

// TestListInLab enumerates a lab host's interfaces from inside its namespace.
func TestListInLab(t *testing.T) {
	lab := natlab.New(t)
	h := lab.AddRouter("nat", natlab.PortRestrictedCone).AddHost("peer")
	var nics []NIC
	if err := h.Do(func() error {
		var err error
		nics, err = List(Options{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(nics) != 1 || nics[0].Name != "eth0" || nics[0].Addrs[0].Addr() != h.IP4() {
		t.Fatalf("got %+v, want eth0 with %s (loopback skipped)", nics, h.IP4())
	}
	err := h.Do(func() error { _, err := List(Options{Only: []string{"eth0", "wlan9"}}); return err })
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("asking for a missing interface: %v", err)
	}
}
