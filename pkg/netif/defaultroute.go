package netif

import (
	"bufio"
	"io"
	"os"
	"strings"
)

// defaultRouteFiles are the kernel's routing tables of the calling thread's
// network namespace (thread-self, not self: lab tests switch namespaces per
// thread).
var defaultRouteFiles = map[int]string{AF4: "/proc/thread-self/net/route", AF6: "/proc/thread-self/net/ipv6_route"}

// defaultInterfaces names the interfaces holding a default route, per
// address family. Where the tables cannot be read (not Linux), it is empty.
func defaultInterfaces() map[int]map[string]bool {
	out := map[int]map[string]bool{}
	for af, path := range defaultRouteFiles {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		if af == AF4 {
			out[af] = parseRoute4(f)
		} else {
			out[af] = parseRoute6(f)
		}
		f.Close()
	}
	return out
}

// parseRoute4 reads /proc/net/route: "Iface Destination Gateway Flags ...
// Mask ...", hex fields; a default route has destination and mask 0 and
// the RTF_UP flag.
func parseRoute4(r io.Reader) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first || len(f) < 8 {
			continue
		}
		if f[1] == "00000000" && f[7] == "00000000" && hexFlagUp(f[3]) {
			out[f[0]] = true
		}
	}
	return out
}

// parseRoute6 reads /proc/net/ipv6_route: "dest destlen src srclen next
// metric refcnt use flags iface"; a default route has an all-zero
// destination of length 0, is up and is not the "lo" reject route.
func parseRoute6(r io.Reader) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		if f[0] == strings.Repeat("0", 32) && f[1] == "00" && hexFlagUp(f[8]) && f[9] != "lo" {
			out[f[9]] = true
		}
	}
	return out
}

// hexFlagUp reports whether a hex route-flags field has RTF_UP (0x1).
func hexFlagUp(s string) bool {
	if s == "" {
		return false
	}
	last := s[len(s)-1]
	switch {
	case last >= '0' && last <= '9':
		return (last-'0')&1 == 1
	case last >= 'a' && last <= 'f':
		return (last-'a'+10)&1 == 1
	case last >= 'A' && last <= 'F':
		return (last-'A'+10)&1 == 1
	}
	return false
}
