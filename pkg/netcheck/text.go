package netcheck

import (
	"fmt"
	"io"
	"strings"

	"github.com/p2pd-go/p2pd/pkg/netif"
)

// WriteText prints the report for people, one block per interface.
func (r Report) WriteText(w io.Writer) {
	for _, i := range r.Interfaces {
		def := ""
		if i.Default {
			def = " (default route)"
		}
		fmt.Fprintf(w, "interface %s%s\n", i.Name, def)
		label(w, "NIC addresses:", "%s", list(i.NIC))
		label(w, "external addresses:", "%s", list(i.External))
		if i.NATError != "" {
			label(w, "NAT:", "not measured: %s", i.NATError)
		} else {
			writeNAT(w, "", i.NAT)
		}
		switch {
		case i.NAT6Error != "":
			label(w, "IPv6 NAT:", "not measured: %s", i.NAT6Error)
		case i.NAT6 != nil:
			writeNAT(w, "IPv6 ", *i.NAT6)
		}
		label(w, "UDP reachable:", "%s", yesNo(i.Reachable))
		for _, s := range i.UDP {
			fmt.Fprintf(w, "    udp %s\n", serverLine(s))
		}
	}
	fmt.Fprintln(w, "STUN over TCP")
	for _, s := range r.TCP {
		fmt.Fprintf(w, "    tcp %s\n", serverLine(s))
	}
	switch pm := r.PortMap; {
	case pm.Skipped:
		fmt.Fprintln(w, "port mapping: not checked")
	case pm.Method != "":
		fmt.Fprintf(w, "port mapping: %s (gateway's external address %s)\n", pm.Method, pm.External)
	default:
		fmt.Fprintf(w, "port mapping: none found (%s)\n", pm.Error)
	}
	fmt.Fprintf(w, "measured in %s\n", r.Elapsed)
}

// writeNAT prints a NAT record's four lines, labelled with prefix ("" for
// IPv4, "IPv6 ").
func writeNAT(w io.Writer, prefix string, n netif.NAT) {
	label(w, prefix+"NAT type:", "%d %s", n.Type, n.Info)
	label(w, prefix+"delta:", "%d %s (value %d)", n.Delta.Type, n.DeltaInfo, n.Delta.Value)
	label(w, prefix+"RFC 4787 mapping:", "%s", orUnknown(n.Mapping))
	label(w, prefix+"RFC 4787 filtering:", "%s", orUnknown(n.Filtering))
}

// label prints one labelled line of an interface's block, values aligned
// after the longest label ("IPv6 RFC 4787 filtering:").
func label(w io.Writer, name, format string, args ...any) {
	fmt.Fprintf(w, "  %-25s"+format+"\n", append([]any{name}, args...)...)
}

func serverLine(s Server) string {
	if s.Error != "" {
		return fmt.Sprintf("%-22s no answer: %s", s.Server, s.Error)
	}
	return fmt.Sprintf("%-22s %7.1f ms  mapped %s", s.Server, s.LatencyMS, s.Mapped)
}

func list(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
