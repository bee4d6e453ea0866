package netif

import (
	"strings"
	"testing"
)

func TestDefaultRouteTables(t *testing.T) {
	v4 := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
		"docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n" +
		"wg0\t00000000\t00000000\t0002\t0\t0\t0\t00000000\t0\t0\t0\n" // not up
	got := parseRoute4(strings.NewReader(v4))
	if !got["eth0"] || got["docker0"] || got["wg0"] || len(got) != 1 {
		t.Errorf("IPv4 defaults %v, want only eth0", got)
	}
	zero := strings.Repeat("0", 32)
	v6 := "fd000000000000000000000000000000 40 " + zero + " 00 " + zero + " 00000100 00000001 00000000 00000001     eth0\n" +
		zero + " 00 " + zero + " 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth1\n" +
		zero + " 00 " + zero + " 00 " + zero + " ffffffff 00000001 00000000 00200200       lo\n"
	got = parseRoute6(strings.NewReader(v6))
	if !got["eth1"] || got["eth0"] || got["lo"] || len(got) != 1 {
		t.Errorf("IPv6 defaults %v, want only eth1", got)
	}
}

// FuzzDefaultRoutes: the route-table parsers take any text.
func FuzzDefaultRoutes(f *testing.F) {
	f.Add("eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")
	f.Fuzz(func(t *testing.T, s string) {
		for name := range parseRoute4(strings.NewReader(s)) {
			if name == "" {
				t.Fatal("empty interface name")
			}
		}
		for name := range parseRoute6(strings.NewReader(s)) {
			if name == "" || name == "lo" {
				t.Fatalf("bad interface %q", name)
			}
		}
	})
}
