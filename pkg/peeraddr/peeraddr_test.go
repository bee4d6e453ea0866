package peeraddr

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/p2pd-go/p2pd/pkg/identity"
)

// testID is a valid node id (the key 01 02 03 00...).
var testID = identity.NodeID([identity.KeySize]byte{1, 2, 3})

func TestParseValid(t *testing.T) {
	v4 := "[0,8.8.8.8,192.168.21.21,58959,3,2,0]"
	tests := []struct {
		name  string
		in    string
		want  Address
		canon string // "" = same as in
	}{
		{
			name: "manual example shape",
			in:   "0,1-" + v4 + "-0-" + testID,
			want: Address{Signal: []int{0, 1}, NodeID: testID, IPv4: []Block{{
				IfIndex: 0, Ext: netip.MustParseAddr("8.8.8.8"), NIC: netip.MustParseAddr("192.168.21.21"),
				Port: 58959, NATType: 3, DeltaType: 2, DeltaValue: 0,
			}}},
		},
		{
			name: "no interfaces",
			in:   "2-0-0-" + testID,
			want: Address{Signal: []int{2}, NodeID: testID},
		},
		{
			name: "ipv6 exploded becomes compressed",
			in:   "0,1,2-0-[1,2001:0db8:0000:0000:0000:0000:0000:0001,fe80:0000:0000:0000:0000:0000:0000:0002,10001,6,6,0]-" + testID,
			want: Address{Signal: []int{0, 1, 2}, NodeID: testID, IPv6: []Block{{
				IfIndex: 1, Ext: netip.MustParseAddr("2001:db8::1"), NIC: netip.MustParseAddr("fe80::2"),
				Port: 10001, NATType: 6, DeltaType: 6, DeltaValue: 0,
			}}},
			canon: "0,1,2-0-[1,2001:db8::1,fe80::2,10001,6,6,0]-" + testID,
		},
		{
			name: "four blocks each family",
			in: "255-" + strings.Repeat(v4+"|", 3) + v4 + "-" +
				strings.Repeat("[3,::1,::2,65535,7,6,65535]|", 3) + "[3,::1,::2,65535,7,6,65535]-" + testID,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tc.want.NodeID != "" && !reflect.DeepEqual(a, tc.want) {
				t.Fatalf("Parse = %+v\nwant %+v", a, tc.want)
			}
			canon := tc.canon
			if canon == "" {
				canon = tc.in
			}
			if got := a.String(); got != canon {
				t.Fatalf("String = %q, want %q", got, canon)
			}
			back, err := Parse(a.String())
			if err != nil || !reflect.DeepEqual(back, a) {
				t.Fatalf("round trip: %+v, %v", back, err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	blk := "[0,8.8.8.8,192.168.1.2,10001,3,2,0]"
	with := func(sig, v4, v6 string) string { return sig + "-" + v4 + "-" + v6 + "-" + testID }
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "1 parts"},
		{"three parts", "0-0-" + testID, "3 parts"},
		{"five parts (v3 machine id)", with("0", "0", "0") + "-abc", "5 parts"},
		{"too long", strings.Repeat("0", MaxLen+1), "at most 4096"},
		{"empty signal", with("", "0", "0"), "signal: empty"},
		{"four signal", with("0,1,2,3", "0", "0"), "signal: 4 offsets"},
		{"negative signal", with("-1", "0", "0"), "parts"},
		{"signal word", with("0,x", "0", "0"), `signal offset 2: "x" is not a decimal number`},
		{"signal repeated", with("1,1", "0", "0"), "signal offset 2: 1 repeated"},
		{"signal range", with("256", "0", "0"), "signal offset 1: 256 out of range 0-255"},
		{"signal leading zero", with("01", "0", "0"), "leading zero"},
		{"empty ipv4", with("0", "", "0"), "ipv4: empty"},
		{"five blocks", with("0", strings.Repeat(blk+"|", 4)+blk, "0"), "ipv4: 5 blocks"},
		{"no brackets", with("0", "0,8.8.8.8,1.2.3.4,1,3,2,0", "0"), "ipv4 block 1: \"0,8.8.8.8,1.2.3.4,1,3,2,0\" is not enclosed"},
		{"six fields", with("0", "[0,8.8.8.8,1.2.3.4,1,3,2]", "0"), "ipv4 block 1: 6 fields"},
		{"nat type", with("0", blk+"|[1,8.8.8.8,1.2.3.4,1,9,2,0]", "0"), "ipv4 block 2: nat_type: 9 out of range 1-7"},
		{"nat type zero", with("0", "[1,8.8.8.8,1.2.3.4,1,0,2,0]", "0"), "nat_type: 0 out of range 1-7"},
		{"delta type", with("0", "[1,8.8.8.8,1.2.3.4,1,3,7,0]", "0"), "delta_type: 7 out of range 1-6"},
		{"delta value", with("0", "[1,8.8.8.8,1.2.3.4,1,3,2,65536]", "0"), "delta_value: 65536 out of range 0-65535"},
		{"negative delta", with("0", "[1,8.8.8.8,1.2.3.4,1,3,2,-5]", "0"), "parts"},
		{"port zero", with("0", "[1,8.8.8.8,1.2.3.4,0,3,2,0]", "0"), "port: 0 out of range 1-65535"},
		{"port big", with("0", "[1,8.8.8.8,1.2.3.4,65536,3,2,0]", "0"), "port: 65536 out of range 1-65535"},
		{"if index", with("0", "[256,8.8.8.8,1.2.3.4,1,3,2,0]", "0"), "if_index: 256 out of range 0-255"},
		{"bad ip", with("0", "[1,8.8.8,1.2.3.4,1,3,2,0]", "0"), `ext_ip: "8.8.8" is not an IP address`},
		{"v6 in v4", with("0", "0", "[1,8.8.8.8,::1,1,3,2,0]"), "ipv6 block 1: ext_ip: 8.8.8.8 is not IPv6"},
		{"mapped in v6", with("0", "0", "[1,::ffff:1.2.3.4,::1,1,3,2,0]"), "is not IPv6"},
		{"v4 has v6", with("0", "[1,8.8.8.8,::1,1,3,2,0]", "0"), "ipv4 block 1: nic_ip: ::1 is not IPv4"},
		{"zone", with("0", "0", "[1,::1,fe80::1%eth0,1,3,2,0]"), "nic_ip: fe80::1%eth0 has a zone"},
		{"space", with("0", "[1, 8.8.8.8,1.2.3.4,1,3,2,0]", "0"), "not an IP address"},
		{"plus sign", with("0", "[+1,8.8.8.8,1.2.3.4,1,3,2,0]", "0"), "not a decimal number"},
		{"bad node id", "0-0-0-ABC", "node id"},
		{"v2 random node id", "0-0-0-zmUGXPOFxBuToh", "node id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error", tc.in, a)
			}
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("error %v does not wrap ErrSyntax", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "peeraddr: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Address{Signal: []int{0}, NodeID: testID, IPv4: []Block{{
		Ext: netip.MustParseAddr("1.2.3.4"), NIC: netip.MustParseAddr("10.0.0.1"), Port: 1, NATType: 1, DeltaType: 1,
	}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	tests := []struct {
		name   string
		change func(a *Address)
		want   string
	}{
		{"no signal", func(a *Address) { a.Signal = nil }, "no offsets"},
		{"missing nic", func(a *Address) { a.IPv4[0].NIC = netip.Addr{} }, "nic_ip: missing"},
		{"negative delta", func(a *Address) { a.IPv4[0].DeltaValue = -1 }, "delta_value: -1"},
		{"five v6", func(a *Address) { a.IPv6 = make([]Block, 5) }, "ipv6: 5 blocks"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := ok
			a.IPv4 = append([]Block(nil), ok.IPv4...)
			tc.change(&a)
			err := a.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want error mentioning %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("0,1-[0,8.8.8.8,192.168.21.21,58959,3,2,0]-0-" + testID)
	f.Add("0-0-[1,2001:0db8:0000:0000:0000:0000:0000:0001,fe80::2,10001,6,6,0]-" + testID)
	f.Add("0-0-0-" + testID)
	f.Add("1,2-[0,1.1.1.1,2.2.2.2,1,1,1,1]|[1,1.1.1.1,2.2.2.2,1,1,1,1]-0-" + testID)
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("Parse accepted %q but Validate says %v", s, err)
		}
		text := a.String()
		b, err := Parse(text)
		if err != nil {
			t.Fatalf("Parse(%q) ok but Parse(String()=%q): %v", s, text, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the address:\n%+v\n%+v", a, b)
		}
		if b.String() != text {
			t.Fatalf("String not stable: %q vs %q", text, b.String())
		}
	})
}

func BenchmarkParse(b *testing.B) {
	s := "0,1,2-[0,8.8.8.8,192.168.21.21,58959,3,2,0]|[1,1.1.1.1,10.0.0.1,58959,5,6,0]-[0,2001:db8::1,fe80::1,58959,6,6,0]-" + testID
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}
