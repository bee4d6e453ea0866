package portmap

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/p2pd-go/p2pd/internal/sock"
)

// UPnP IGD (Internet Gateway Device) port mapping: SSDP discovery on the LAN,
// the device description over HTTP, then SOAP calls on its WANIPConnection
// (or WANPPPConnection) service. All sockets come from the sock.Net.

const ssdpAddr = "239.255.255.250:1900"

// maxDescription bounds what we read from a gateway's HTTP answers.
const maxDescription = 1 << 20

type igd struct {
	control  string // SOAP control URL
	service  string // service type URN
	local    netip.Addr
	client   *http.Client
	external netip.Addr
}

// httpClient talks to the gateway only: no redirects, no proxy.
func httpClient(n sock.Net, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: n.DialContext, DisableKeepAlives: true, Proxy: nil,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// onGateway checks that a URL points at the gateway itself, so a LAN host
// answering SSDP cannot make us fetch or post elsewhere.
func onGateway(raw string, gw netip.Addr) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q: %w", raw, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("URL %q: only http is used on the LAN", raw)
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil || ip.Unmap() != gw {
		return nil, fmt.Errorf("URL %q is not on the gateway %s", raw, gw)
	}
	return u, nil
}

// discover finds the gateway's IGD description by SSDP and picks its WAN
// connection service.
func discover(ctx context.Context, n sock.Net, gw netip.Addr, timeout time.Duration) (*igd, error) {
	pc, err := n.ListenPacket(ctx, "udp4", ":0")
	if err != nil {
		return nil, fmt.Errorf("portmap: upnp: %w", err)
	}
	defer pc.Close()
	dst, _ := net.ResolveUDPAddr("udp4", ssdpAddr)
	for _, st := range []string{"urn:schemas-upnp-org:device:InternetGatewayDevice:2", "urn:schemas-upnp-org:device:InternetGatewayDevice:1"} {
		req := "M-SEARCH * HTTP/1.1\r\nHOST: " + ssdpAddr + "\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: " + st + "\r\n\r\n"
		if _, err := pc.WriteTo([]byte(req), dst); err != nil {
			return nil, fmt.Errorf("portmap: upnp: ssdp search: %w", err)
		}
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = pc.SetReadDeadline(deadline)
	buf := make([]byte, 2048)
	client := httpClient(n, timeout)
	var lastErr error = errors.New("no gateway answered SSDP")
	for {
		nr, from, err := pc.ReadFrom(buf)
		if err != nil {
			return nil, fmt.Errorf("portmap: upnp: %w", lastErr)
		}
		if ap, err := netip.ParseAddrPort(from.String()); err != nil || ap.Addr().Unmap() != gw {
			continue // only the default gateway may answer
		}
		loc := ssdpLocation(buf[:nr])
		if loc == "" {
			continue
		}
		g, err := describe(ctx, client, loc, gw)
		if err != nil {
			lastErr = err
			continue
		}
		// Our LAN address as the gateway sees it (secure-mode gateways
		// only map to the requester's own address).
		g.local, err = localAddrToward(ctx, n, from)
		if err != nil {
			lastErr = err
			continue
		}
		return g, nil
	}
}

func ssdpLocation(resp []byte) string {
	for _, line := range strings.Split(string(resp), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), "location") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func localAddrToward(ctx context.Context, n sock.Net, to net.Addr) (netip.Addr, error) {
	c, err := n.DialContext(ctx, "udp4", to.String())
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr(), nil
}

// deviceDesc is the part of a UPnP device description we need.
type deviceDesc struct {
	URLBase string `xml:"URLBase"`
	Device  device `xml:"device"`
}

type device struct {
	Services []struct {
		Type    string `xml:"serviceType"`
		Control string `xml:"controlURL"`
	} `xml:"serviceList>service"`
	Devices []device `xml:"deviceList>device"`
}

func (d device) find(prefixes ...string) (string, string) {
	for _, p := range prefixes {
		for _, s := range d.Services {
			if strings.HasPrefix(s.Type, p) {
				return s.Type, s.Control
			}
		}
	}
	for _, sub := range d.Devices {
		if t, c := sub.find(prefixes...); t != "" {
			return t, c
		}
	}
	return "", ""
}

func describe(ctx context.Context, client *http.Client, loc string, gw netip.Addr) (*igd, error) {
	base, err := onGateway(loc, gw)
	if err != nil {
		return nil, fmt.Errorf("SSDP location: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("bad SSDP location %q: %w", loc, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var d deviceDesc
	if err := xml.NewDecoder(io.LimitReader(resp.Body, maxDescription)).Decode(&d); err != nil {
		return nil, fmt.Errorf("device description %s: %w", loc, err)
	}
	st, control := d.Device.find("urn:schemas-upnp-org:service:WANIPConnection:", "urn:schemas-upnp-org:service:WANPPPConnection:")
	if st == "" {
		return nil, fmt.Errorf("device %s has no WAN connection service", loc)
	}
	if d.URLBase != "" {
		if b, err := url.Parse(d.URLBase); err == nil {
			base = b
		}
	}
	ctl, err := base.Parse(control)
	if err != nil {
		return nil, fmt.Errorf("bad control URL %q: %w", control, err)
	}
	if _, err := onGateway(ctl.String(), gw); err != nil {
		return nil, fmt.Errorf("control URL: %w", err)
	}
	return &igd{control: ctl.String(), service: st, client: client}, nil
}

// soap calls action with args (in order) and returns the response's fields.
func (g *igd) soap(ctx context.Context, action string, args [][2]string) (map[string]string, error) {
	var body bytes.Buffer
	body.WriteString(`<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>`)
	fmt.Fprintf(&body, `<u:%s xmlns:u="%s">`, action, g.service)
	for _, a := range args {
		fmt.Fprintf(&body, "<%s>", a[0])
		_ = xml.EscapeText(&body, []byte(a[1]))
		fmt.Fprintf(&body, "</%s>", a[0])
	}
	fmt.Fprintf(&body, `</u:%s></s:Body></s:Envelope>`, action)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.control, &body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
	req.Header.Set("SOAPAction", fmt.Sprintf(`"%s#%s"`, g.service, action))
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("portmap: upnp %s: %w", action, err)
	}
	defer resp.Body.Close()
	fields, err := soapFields(io.LimitReader(resp.Body, maxDescription))
	if err != nil {
		return nil, fmt.Errorf("portmap: upnp %s: %w", action, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("portmap: upnp %s: gateway error %s %s (%s)", action, fields["errorCode"], fields["errorDescription"], resp.Status)
	}
	return fields, nil
}

// soapFields collects the text of every leaf element of a SOAP response.
func soapFields(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	dec := xml.NewDecoder(r)
	var name string
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("bad SOAP response: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name = t.Name.Local
			text.Reset()
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			if name == t.Name.Local {
				out[name] = strings.TrimSpace(text.String())
			}
			name = ""
		}
	}
}

func (g *igd) add(ctx context.Context, port uint16, lifetime time.Duration) error {
	p := strconv.Itoa(int(port))
	_, err := g.soap(ctx, "AddPortMapping", [][2]string{
		{"NewRemoteHost", ""}, {"NewExternalPort", p}, {"NewProtocol", "TCP"}, {"NewInternalPort", p},
		{"NewInternalClient", g.local.String()}, {"NewEnabled", "1"}, {"NewPortMappingDescription", "p2pd"},
		{"NewLeaseDuration", strconv.Itoa(int(lifetime / time.Second))},
	})
	return err
}

func (g *igd) remove(ctx context.Context, port uint16) error {
	_, err := g.soap(ctx, "DeletePortMapping", [][2]string{
		{"NewRemoteHost", ""}, {"NewExternalPort", strconv.Itoa(int(port))}, {"NewProtocol", "TCP"},
	})
	return err
}

func (g *igd) externalIP(ctx context.Context) (netip.Addr, error) {
	f, err := g.soap(ctx, "GetExternalIPAddress", nil)
	if err != nil {
		return netip.Addr{}, err
	}
	a, err := netip.ParseAddr(f["NewExternalIPAddress"])
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: upnp: gateway's external address %q: %w", f["NewExternalIPAddress"], err)
	}
	return a, nil
}
