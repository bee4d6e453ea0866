package netif

import (
	"runtime"
	"testing"
)

func TestDefaultSkip(t *testing.T) {
	cases := map[string]map[string]bool{ // GOOS -> interface name -> skipped
		"linux":   {"lo": true, "docker0": true, "veth12ab": true, "br-3f2a": true, "eth0": false, "wlp2s0": false, "enp0s31f6": false},
		"darwin":  {"lo0": true, "utun3": true, "awdl0": true, "llw0": true, "bridge0": true, "en0": false, "en7": false},
		"windows": {"vEthernet (WSL)": true, "Loopback Pseudo-Interface 1": true, "Teredo Tunneling Pseudo-Interface": true, "Ethernet": false, "Wi-Fi": false, "Ethernet 2": false},
	}
	names, ok := cases[runtime.GOOS]
	if !ok {
		names = cases["linux"]
	}
	for name, want := range names {
		t.Run(name, func(t *testing.T) {
			if got := DefaultSkip.MatchString(name); got != want {
				t.Errorf("DefaultSkip(%q) = %v, want %v", name, got, want)
			}
		})
	}
}
