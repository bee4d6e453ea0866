package netif

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
)

// NAT is an interface's NAT profile as P2PD shows it, plus the RFC 4787
// classes. The text fields are filled by whoever measured it.
type NAT struct {
	Type      int    `json:"type"`
	Info      string `json:"nat_info"`
	Delta     Delta  `json:"delta"`
	DeltaInfo string `json:"delta_info"`
	Mapping   string `json:"mapping,omitempty"`
	Filtering string `json:"filtering,omitempty"`
}

// Delta is P2PD's port-allocation pattern: type 1-6 and a value.
type Delta struct {
	Type  int `json:"type"`
	Value int `json:"value"`
}

// Interface is a started interface: its routes per address family and NAT.
type Interface struct {
	Name      string
	Index     int // position in the node's interface list (the address's if_index)
	OSIndex   int // the operating system's interface index
	MAC       string
	IsDefault map[int]bool
	NAT       NAT // of the first IPv4 route (P2PD's one NAT per interface)
	// NAT6 is the IPv6 routes' filtering as a NAT record (nil without
	// IPv6 routes): IPv6 is not translated, so only filtering sets it.
	NAT6   *NAT
	Routes map[int][]Route
}

type ipRangeJSON struct {
	IP   string `json:"ip"`
	CIDR int    `json:"cidr"`
	AF   int    `json:"af"`
}

type routeJSON struct {
	AF        int           `json:"af"`
	NIC       []ipRangeJSON `json:"nic_ips"`
	Ext       []ipRangeJSON `json:"ext_ips"`
	LinkLocal []ipRangeJSON `json:"link_local_ips"`
}

type interfaceJSON struct {
	NetifaceIndex int                    `json:"netiface_index"`
	Name          string                 `json:"name"`
	NICNo         int                    `json:"nic_no"`
	ID            string                 `json:"id"`
	MAC           string                 `json:"mac"`
	IsDefault     map[string]bool        `json:"is_default"`
	NAT           NAT                    `json:"nat"`
	NAT6          *NAT                   `json:"nat6,omitempty"`
	RP            map[string][]routeJSON `json:"rp"`
}

func afOf(a netip.Addr) int {
	if a.Is4() {
		return AF4
	}
	return AF6
}

func rangesJSON(ps []netip.Prefix) []ipRangeJSON {
	out := make([]ipRangeJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, ipRangeJSON{IP: p.Addr().String(), CIDR: p.Bits(), AF: afOf(p.Addr())})
	}
	return out
}

// MarshalJSON writes P2PD's Interface.to_dict shape: AF keys "2" and "10",
// route pools under "rp", NIC and external addresses as {ip, cidr, af}.
// External addresses are single hosts (cidr 32 or 128).
func (i Interface) MarshalJSON() ([]byte, error) {
	j := interfaceJSON{
		NetifaceIndex: i.OSIndex, Name: i.Name, NICNo: i.Index, ID: i.Name, MAC: i.MAC,
		IsDefault: map[string]bool{}, NAT: i.NAT, NAT6: i.NAT6, RP: map[string][]routeJSON{},
	}
	for _, af := range []int{AF4, AF6} {
		key := strconv.Itoa(af)
		j.IsDefault[key] = i.IsDefault[af]
		rs := []routeJSON{}
		for _, r := range i.Routes[af] {
			r.AF = af
			rs = append(rs, r.toJSON())
		}
		j.RP[key] = rs
	}
	return json.Marshal(j)
}

func (r Route) toJSON() routeJSON {
	ext := make([]netip.Prefix, 0, len(r.Ext))
	for _, e := range r.Ext {
		ext = append(ext, netip.PrefixFrom(e, e.BitLen()))
	}
	return routeJSON{AF: r.AF, NIC: rangesJSON(r.NIC), Ext: rangesJSON(ext), LinkLocal: rangesJSON(r.LinkLocal)}
}

// MarshalJSON writes P2PD's Route.to_dict shape: af, nic_ips, ext_ips and
// link_local_ips as {ip, cidr, af}.
func (r Route) MarshalJSON() ([]byte, error) { return json.Marshal(r.toJSON()) }

// UnmarshalJSON reads the shape MarshalJSON writes (P2PD's from_dict input),
// checking every address.
func (i *Interface) UnmarshalJSON(b []byte) error {
	var j interfaceJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("netif: interface: %w", err)
	}
	out := Interface{Name: j.Name, Index: j.NICNo, OSIndex: j.NetifaceIndex, MAC: j.MAC, NAT: j.NAT, NAT6: j.NAT6,
		IsDefault: map[int]bool{}, Routes: map[int][]Route{}}
	for key, rs := range j.RP {
		af, err := strconv.Atoi(key)
		if err != nil || (af != AF4 && af != AF6) {
			return fmt.Errorf("netif: interface %q: rp key %q is not 2 or 10", j.Name, key)
		}
		for n, rj := range rs {
			r, err := routeFromJSON(af, rj)
			if err != nil {
				return fmt.Errorf("netif: interface %q: rp[%s][%d]: %w", j.Name, key, n, err)
			}
			out.Routes[af] = append(out.Routes[af], r)
		}
	}
	for key, v := range j.IsDefault {
		af, err := strconv.Atoi(key)
		if err != nil || (af != AF4 && af != AF6) {
			return fmt.Errorf("netif: interface %q: is_default key %q is not 2 or 10", j.Name, key)
		}
		out.IsDefault[af] = v
	}
	*i = out
	return nil
}

func routeFromJSON(af int, rj routeJSON) (Route, error) {
	r := Route{AF: af}
	var err error
	if r.NIC, err = prefixes(af, rj.NIC, "nic_ips"); err != nil {
		return r, err
	}
	ext, err := prefixes(af, rj.Ext, "ext_ips")
	if err != nil {
		return r, err
	}
	if r.LinkLocal, err = prefixes(AF6, rj.LinkLocal, "link_local_ips"); err != nil {
		return r, err
	}
	if len(r.NIC) == 0 || len(ext) == 0 {
		return r, fmt.Errorf("a route needs at least one nic_ips and one ext_ips entry")
	}
	for _, e := range ext {
		r.Ext = append(r.Ext, e.Addr())
	}
	return r, nil
}

func prefixes(af int, in []ipRangeJSON, field string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for n, x := range in {
		a, err := netip.ParseAddr(x.IP)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, n, err)
		}
		if afOf(a) != af {
			return nil, fmt.Errorf("%s[%d]: %s is not address family %d", field, n, a, af)
		}
		if x.CIDR < 0 || x.CIDR > a.BitLen() {
			return nil, fmt.Errorf("%s[%d]: cidr %d out of range", field, n, x.CIDR)
		}
		out = append(out, netip.PrefixFrom(a, x.CIDR))
	}
	return out, nil
}
