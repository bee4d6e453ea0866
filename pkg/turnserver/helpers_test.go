package turnserver

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v2"
	"github.com/pion/turn/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const testRealm = "test.p2pd"

// testServer starts a server on 127.0.0.1 with a random port and a relay
// port range outside the kernel's ephemeral range.
func testServer(t testing.TB, mod func(*Config)) (*Server, *prometheus.Registry) {
	t.Helper()
	lo := 10000 + rand.IntN(22000)
	cfg := Config{
		Realm:        testRealm,
		Users:        map[string]string{"alice": "alice-pw", "bob": "bob-pw"},
		Secrets:      []string{"s3cret-old", "s3cret-new"},
		ListenIPs:    []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		UDPWorkers:   2,
		RelayBind:    netip.MustParseAddr("127.0.0.1"),
		RelayIP:      netip.MustParseAddr("127.0.0.1"),
		RelayMinPort: lo,
		RelayMaxPort: lo + 700,
	}
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, reg
}

// listenAddr is the server's first UDP or TCP address.
func listenAddr(s *Server, network string) string {
	if network == "tcp" {
		return s.TCPAddrs()[0].String()
	}
	return s.UDPAddrs()[0].String()
}

func loopbackAllowed(c *Config) {
	c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}

// pionClient connects a pion TURN client over network ("udp" or "tcp").
func pionClient(t *testing.T, s *Server, network, user, pass string) *turn.Client {
	t.Helper()
	var conn net.PacketConn
	var addr string
	switch network {
	case "udp":
		addr = s.UDPAddrs()[0].String()
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	case "tcp":
		addr = s.TCPAddrs()[0].String()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn = turn.NewSTUNConn(c)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, Realm: testRealm, LoggerFactory: lf,
		RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = conn.Close() })
	return c
}

// echoPeer is a UDP peer on loopback that echoes what it gets.
func echoPeer(t *testing.T) net.Addr {
	t.Helper()
	return echoPeerTB(t)
}

func echoPeerTB(t testing.TB) net.Addr {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(buf[:n], from)
		}
	}()
	return c.LocalAddr()
}

// rawClient speaks TURN by hand so tests can see exact error codes and check
// the server's MESSAGE-INTEGRITY on them.
type rawClient struct {
	t      testing.TB
	conn   net.Conn
	stream bool
	user   string
	key    []byte
	nonce  stun.Nonce
}

func newRawClient(t testing.TB, network, addr, user, pass string) *rawClient {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{t: t, conn: c, stream: network == "tcp", user: user, key: turn.GenerateAuthKey(user, testRealm, pass)}
}

// roundTrip sends m and returns the response with its transaction ID. The
// deadline only bounds a broken test; no test asserts on timing.
func (r *rawClient) roundTrip(m *stun.Message) *stun.Message {
	r.t.Helper()
	_ = r.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.conn.Write(m.Raw); err != nil {
		r.t.Fatal(err)
	}
	for {
		var b []byte
		if r.stream {
			hdr := make([]byte, stunHeader)
			if _, err := io.ReadFull(r.conn, hdr); err != nil {
				r.t.Fatal(err)
			}
			body := make([]byte, binary.BigEndian.Uint16(hdr[2:4]))
			if _, err := io.ReadFull(r.conn, body); err != nil {
				r.t.Fatal(err)
			}
			b = append(hdr, body...)
		} else {
			b = make([]byte, 2048)
			n, err := r.conn.Read(b)
			if err != nil {
				r.t.Fatal(err)
			}
			b = b[:n]
		}
		res := &stun.Message{Raw: b}
		if err := res.Decode(); err != nil {
			r.t.Fatalf("bad response: %v", err)
		}
		if res.TransactionID == m.TransactionID {
			return res
		}
	}
}

// request sends an authenticated request of method with attrs.
func (r *rawClient) request(method stun.Method, attrs ...stun.Setter) *stun.Message {
	r.t.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
	setters = append(setters, stun.NewUsername(r.user), stun.NewRealm(testRealm), r.nonce, stun.MessageIntegrity(r.key))
	m, err := stun.Build(setters...)
	if err != nil {
		r.t.Fatal(err)
	}
	return r.roundTrip(m)
}

var udpTransport = rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}}

type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *stun.Message) error { m.Add(a.t, a.v); return nil }

// allocate gets a nonce, then allocates; it returns the final response.
func (r *rawClient) allocate() *stun.Message {
	r.t.Helper()
	m, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), udpTransport)
	res := r.roundTrip(m)
	if err := r.nonce.GetFrom(res); err != nil {
		r.t.Fatalf("no nonce in first answer: %v", err)
	}
	return r.request(stun.MethodAllocate, udpTransport)
}

// code returns the response's error code (0 for a success response) after
// checking its MESSAGE-INTEGRITY.
func (r *rawClient) code(res *stun.Message) int {
	r.t.Helper()
	if res.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(res); err != nil {
		r.t.Fatalf("error response without ERROR-CODE: %v", res)
	}
	if int(ec.Code) == 403 || int(ec.Code) == 440 || int(ec.Code) == 442 || int(ec.Code) == 443 || int(ec.Code) == 486 || int(ec.Code) == 508 {
		if err := stun.MessageIntegrity(r.key).Check(res); err != nil {
			r.t.Fatalf("%d response fails MESSAGE-INTEGRITY: %v", ec.Code, err)
		}
	}
	return int(ec.Code)
}

// xorPeer encodes ip:port as XOR-PEER-ADDRESS keeping the family of ip as
// written (an IPv4-mapped address stays IPv6, which stun's encoder would not do).
func xorPeer(ip netip.Addr, port int, tid [stun.TransactionIDSize]byte) []byte {
	var x [16]byte
	binary.BigEndian.PutUint32(x[:4], magicCookie)
	copy(x[4:], tid[:])
	fam, raw := byte(1), ip.AsSlice()
	if ip.Is6() {
		fam = 2
	}
	v := []byte{0, fam, 0, 0}
	binary.BigEndian.PutUint16(v[2:], uint16(port)^uint16(magicCookie>>16))
	for i, b := range raw {
		v = append(v, b^x[i])
	}
	return v
}

// peerRequest sends CreatePermission (channel == 0) or ChannelBind for ip.
func (r *rawClient) peerRequest(ip netip.Addr, channel uint16) *stun.Message {
	r.t.Helper()
	return r.peerRequestPort(ip, 4000, channel)
}

// peerRequestPort is peerRequest with a peer port.
func (r *rawClient) peerRequestPort(ip netip.Addr, port int, channel uint16) *stun.Message {
	r.t.Helper()
	method := stun.MethodCreatePermission
	if channel != 0 {
		method = stun.MethodChannelBind
	}
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	m, err := stun.Build(setters...)
	if err != nil {
		r.t.Fatal(err)
	}
	m.Add(stun.AttrXORPeerAddress, xorPeer(ip, port, m.TransactionID))
	if channel != 0 {
		m.Add(stun.AttrChannelNumber, []byte{byte(channel >> 8), byte(channel), 0, 0})
	}
	for _, s := range []stun.Setter{stun.NewUsername(r.user), stun.NewRealm(testRealm), r.nonce, stun.MessageIntegrity(r.key)} {
		if err := s.AddTo(m); err != nil {
			r.t.Fatal(err)
		}
	}
	return r.roundTrip(m)
}

func metric(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

func containsCode(err error, code string) bool {
	return err != nil && strings.Contains(err.Error(), code)
}
