package netcheck

import (
	"fmt"
	"io"
	"strings"
)

// WriteText prints the report for people, one block per interface.
func (r Report) WriteText(w io.Writer) {
	for _, i := range r.Interfaces {
		def := ""
		if i.Default {
			def = " (default route)"
		}
		fmt.Fprintf(w, "interface %s%s\n", i.Name, def)
		fmt.Fprintf(w, "  NIC addresses:      %s\n", list(i.NIC))
		fmt.Fprintf(w, "  external addresses: %s\n", list(i.External))
		if i.NATError != "" {
			fmt.Fprintf(w, "  NAT:                not measured: %s\n", i.NATError)
		} else {
			fmt.Fprintf(w, "  NAT type:           %d %s\n", i.NAT.Type, i.NAT.Info)
			fmt.Fprintf(w, "  delta:              %d %s (value %d)\n", i.NAT.Delta.Type, i.NAT.DeltaInfo, i.NAT.Delta.Value)
			fmt.Fprintf(w, "  RFC 4787 mapping:   %s\n", orUnknown(i.NAT.Mapping))
			fmt.Fprintf(w, "  RFC 4787 filtering: %s\n", orUnknown(i.NAT.Filtering))
		}
		fmt.Fprintf(w, "  UDP reachable:      %s\n", yesNo(i.Reachable))
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
