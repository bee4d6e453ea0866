package stun

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

// RFC 5769 test vectors.
var (
	rfc5769Request = []byte("\x00\x01\x00\x58" +
		"\x21\x12\xa4\x42" +
		"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae" +
		"\x80\x22\x00\x10" + "STUN test client" +
		"\x00\x24\x00\x04" + "\x6e\x00\x01\xff" +
		"\x80\x29\x00\x08" + "\x93\x2f\xf9\xb1\x51\x26\x3b\x36" +
		"\x00\x06\x00\x09" + "\x65\x76\x74\x6a\x3a\x68\x36\x76\x59\x20\x20\x20" +
		"\x00\x08\x00\x14" + "\x9a\xea\xa7\x0c\xbf\xd8\xcb\x56\x78\x1e\xf2\xb5\xb2\xd3\xf2\x49\xc1\xb5\x71\xa2" +
		"\x80\x28\x00\x04" + "\xe5\x7a\x3b\xcf")
	rfc5769Response4 = []byte("\x01\x01\x00\x3c" +
		"\x21\x12\xa4\x42" +
		"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae" +
		"\x80\x22\x00\x0b" + "\x74\x65\x73\x74\x20\x76\x65\x63\x74\x6f\x72\x20" +
		"\x00\x20\x00\x08" + "\x00\x01\xa1\x47\xe1\x12\xa6\x43" +
		"\x00\x08\x00\x14" + "\x2b\x91\xf5\x99\xfd\x9e\x90\xc3\x8c\x74\x89\xf9\x2a\xf9\xba\x53\xf0\x6b\xe7\xd7" +
		"\x80\x28\x00\x04" + "\xc0\x7d\x4c\x96")
	rfc5769Response6 = []byte("\x01\x01\x00\x48" +
		"\x21\x12\xa4\x42" +
		"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae" +
		"\x80\x22\x00\x0b" + "\x74\x65\x73\x74\x20\x76\x65\x63\x74\x6f\x72\x20" +
		"\x00\x20\x00\x14" + "\x00\x02\xa1\x47" +
		"\x01\x13\xa9\xfa\xa5\xd3\xf1\x79\xbc\x25\xf4\xb5\xbe\xd2\xb9\xd9" +
		"\x00\x08\x00\x14" + "\xa3\x82\x95\x4e\x4b\xe6\x7b\xf1\x17\x84\xc9\x7c\x82\x92\xc2\x75\xbf\xe3\xed\x41" +
		"\x80\x28\x00\x04" + "\xc8\xfb\x0b\x4c")
)

func TestRFC5769Responses(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
		want netip.AddrPort
	}{
		{"IPv4", rfc5769Response4, netip.MustParseAddrPort("192.0.2.1:32853")},
		{"IPv6", rfc5769Response6, netip.MustParseAddrPort("[2001:db8:1234:5678:11:2233:4455:6677]:32853")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, key, err := ParseResponse(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if r.Mapped != tc.want {
				t.Errorf("mapped %s, want %s", r.Mapped, tc.want)
			}
			if !bytes.Equal(key[:], tc.raw[4:20]) {
				t.Errorf("key %x", key)
			}
			// Our XOR-MAPPED-ADDRESS encoder must produce the vector's bytes.
			var m stun.Message
			copy(m.TransactionID[:], tc.raw[8:20])
			m.Type = stun.BindingSuccess
			m.WriteHeader()
			addXORAddr(&m, tc.want)
			var orig stun.Message
			orig.Raw = append([]byte(nil), tc.raw...)
			if err := orig.Decode(); err != nil {
				t.Fatal(err)
			}
			want, _ := orig.Get(stun.AttrXORMappedAddress)
			got, _ := m.Get(stun.AttrXORMappedAddress)
			if !bytes.Equal(got, want) {
				t.Errorf("encoded XOR-MAPPED-ADDRESS %x, want %x", got, want)
			}
		})
	}
	// A corrupted fingerprint must be refused.
	bad := append([]byte(nil), rfc5769Response4...)
	bad[len(bad)-1] ^= 1
	if _, _, err := ParseResponse(bad); err == nil {
		t.Error("corrupted FINGERPRINT accepted")
	}
}

// TestRFC5769Request sends the sample request to the server: it carries
// USERNAME, PRIORITY, MESSAGE-INTEGRITY and ICE attributes, which a plain
// STUN server ignores; the answer must echo the transaction id.
func TestRFC5769Request(t *testing.T) {
	m := stun.Message{Raw: append([]byte(nil), rfc5769Request...)}
	if err := m.Decode(); err != nil {
		t.Fatal(err)
	}
	if err := stun.Fingerprint.Check(&m); err != nil {
		t.Fatalf("vector fingerprint: %v", err)
	}
	if err := stun.NewShortTermIntegrity("VOkJxbRl1RmTxUk/WvJxBt").Check(&m); err != nil {
		t.Fatalf("vector integrity: %v", err)
	}
	s, _ := startServer(t, ServerConfig{Primary4: lo1, Alternate4: lo2, Software: "p2pd"})
	c, err := net.Dial("udp4", s.UDPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(rfc5769Request); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	r, key, err := ParseResponse(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key[:], rfc5769Request[4:20]) {
		t.Errorf("transaction id not echoed: %x", key)
	}
	if want := c.LocalAddr().(*net.UDPAddr).AddrPort(); r.Mapped != want {
		t.Errorf("mapped %s, want %s", r.Mapped, want)
	}
	var resp stun.Message
	resp.Raw = buf[:n]
	if err := resp.Decode(); err != nil {
		t.Fatal(err)
	}
	if err := stun.Fingerprint.Check(&resp); err != nil {
		t.Errorf("response fingerprint: %v", err)
	}
	var sw stun.Software
	if err := sw.GetFrom(&resp); err != nil || sw.String() != "p2pd" {
		t.Errorf("SOFTWARE %q, %v", sw, err)
	}
}
