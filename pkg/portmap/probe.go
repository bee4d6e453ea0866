package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"
	"github.com/p2pd-go/p2pd/internal/sock"
)

// Probe finds which port-mapping protocol the default gateway speaks,
// without mapping anything: NAT-PMP's external-address request, then UPnP
// discovery and GetExternalIPAddress. It returns the method and the
// gateway's external address, or an error naming what each method said.
func Probe(ctx context.Context, cfg Config) (string, netip.Addr, error) {
	if cfg.Net == nil {
		cfg.Net = sock.Host
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	gw, err := Gateway(cfg.Net)
	if err != nil {
		return "", netip.Addr{}, err
	}
	var ext netip.Addr
	errPMP := sock.Do(cfg.Net, func() error {
		c := natpmp.NewClientWithTimeout(net.IP(gw.AsSlice()), cfg.Timeout)
		r, err := c.GetExternalAddress()
		if err != nil {
			return err
		}
		ext = netip.AddrFrom4(r.ExternalIPAddress)
		return nil
	})
	if errPMP == nil {
		return MethodNATPMP, ext, nil
	}
	g, errUPnP := discover(ctx, cfg.Net, gw, cfg.Timeout)
	if errUPnP == nil {
		if ext, errUPnP = g.externalIP(ctx); errUPnP == nil {
			return MethodUPnP, ext, nil
		}
	}
	return "", netip.Addr{}, fmt.Errorf("portmap: gateway %s: %w", gw,
		errors.Join(fmt.Errorf("nat-pmp: %w", errPMP), fmt.Errorf("upnp: %w", errUPnP)))
}
