package turnserver

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// ephemeralFile holds the kernel's range for automatically chosen local ports.
const ephemeralFile = "/proc/sys/net/ipv4/ip_local_port_range"

// ephemeralRange reads the kernel's ephemeral port range (Linux only).
func ephemeralRange() (lo, hi int, ok bool) {
	b, err := os.ReadFile(ephemeralFile)
	if err != nil {
		return 0, 0, false
	}
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &lo, &hi); err != nil || lo > hi {
		return 0, 0, false
	}
	return lo, hi, true
}

// warnEphemeral warns when relay ports may be taken by other programs'
// automatically chosen ports: allocations then fail on busy ports, and a
// plain socket of another program can sit in the relay range.
func warnEphemeral(log *slog.Logger, cfg Config) {
	if cfg.Net != nil {
		return
	}
	lo, hi, ok := ephemeralRange()
	if !ok || cfg.RelayMaxPort < lo || cfg.RelayMinPort > hi {
		return
	}
	log.Warn("relay port range overlaps the kernel's ephemeral ports; pick relay ports outside it or change "+ephemeralFile,
		"relay", fmt.Sprintf("%d-%d", cfg.RelayMinPort, cfg.RelayMaxPort), "ephemeral", fmt.Sprintf("%d-%d", lo, hi))
}
