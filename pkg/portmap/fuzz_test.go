package portmap

import (
	"bytes"
	"encoding/xml"
	"net/netip"
	"strings"
	"testing"
)

func TestParsers(t *testing.T) {
	if got := ssdpLocation([]byte("HTTP/1.1 200 OK\r\nST: x\r\nLocation: http://10.1.0.1:5000/rootDesc.xml\r\n\r\n")); got != "http://10.1.0.1:5000/rootDesc.xml" {
		t.Errorf("location %q", got)
	}
	f, err := soapFields(strings.NewReader(`<s:Envelope><s:Body><u:R><NewExternalIPAddress>198.20.113.5</NewExternalIPAddress></u:R></s:Body></s:Envelope>`))
	if err != nil || f["NewExternalIPAddress"] != "198.20.113.5" {
		t.Errorf("fields %v %v", f, err)
	}
	if _, err := soapFields(strings.NewReader(`<a><b>`)); err == nil {
		t.Error("truncated SOAP accepted")
	}
	var d deviceDesc
	desc := `<root><device><deviceList><device><deviceList><device><serviceList><service>
<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ctl/IPConn</controlURL>
</service></serviceList></device></deviceList></device></deviceList></device></root>`
	if err := xml.Unmarshal([]byte(desc), &d); err != nil {
		t.Fatal(err)
	}
	if st, ctl := d.Device.find("urn:schemas-upnp-org:service:WANIPConnection:"); ctl != "/ctl/IPConn" || st == "" {
		t.Errorf("nested service not found: %q %q", st, ctl)
	}
}

func TestOnGateway(t *testing.T) {
	gw := netip.MustParseAddr("10.1.0.1")
	tests := map[string]bool{
		"http://10.1.0.1:5000/rootDesc.xml": true,
		"http://10.1.0.2:5000/rootDesc.xml": false, // another LAN host
		"http://127.0.0.1:12333/p2p/addr":   false, // our own API
		"https://10.1.0.1/x":                false,
		"http://gateway.lan/x":              false,
		"::":                                false,
	}
	for raw, ok := range tests {
		if _, err := onGateway(raw, gw); (err == nil) != ok {
			t.Errorf("%s: err %v, want ok=%v", raw, err, ok)
		}
	}
}

func FuzzSSDPLocation(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nLOCATION: http://x/\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _ = ssdpLocation(b) })
}

func FuzzSOAPFields(f *testing.F) {
	f.Add([]byte(`<Envelope><Body><R><NewExternalIPAddress>1.2.3.4</NewExternalIPAddress></R></Body></Envelope>`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = soapFields(bytes.NewReader(b)) })
}

func FuzzDeviceDescription(f *testing.F) {
	f.Add([]byte(`<root><device><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/c</controlURL></service></serviceList></device></root>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d deviceDesc
		if xml.Unmarshal(b, &d) == nil {
			d.Device.find("urn:schemas-upnp-org:service:WANIPConnection:")
		}
	})
}
