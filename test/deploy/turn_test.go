package deploy

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v3"

	"github.com/p2pd-go/p2pd/pkg/turnserver"
)

// checkRelay allocates on the stack's turnd through its published port with
// a TURN REST credential from the generated secret and relays a datagram to
// a peer on the stack network and back: the network is allowed by
// --allow-peer. A peer in another private range stays refused.
func checkRelay(t *testing.T, s *stack, secretsDir, netA string, relayMin int) {
	secret, err := os.ReadFile(filepath.Join(secretsDir, "turn-secret"))
	if err != nil {
		t.Fatal(err)
	}
	server := s.published("turnd", "3478/udp")
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	user := turnserver.RESTUsername(time.Now().Add(time.Hour), "compose-test")
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: turnserver.RESTPassword(strings.TrimSpace(string(secret)), user), Realm: "p2pd", LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	defer relay.Close()
	ra := relay.LocalAddr().(*net.UDPAddr)
	if ra.IP.String() != netA+".4" || ra.Port < relayMin || ra.Port >= relayMin+relayPorts {
		t.Errorf("relay address %v, want %s.4 with a port in %d-%d", ra, netA, relayMin, relayMin+relayPorts-1)
	}

	// The peer: a UDP socket on the host's address in the stack network
	// (the bridge's gateway), echoing what it gets.
	peer, err := net.ListenPacket("udp4", netA+".1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := peer.ReadFrom(buf)
			if err != nil {
				return
			}
			peer.WriteTo(buf[:n], from)
		}
	}()
	msg := []byte("relayed through compose")
	if _, err := relay.WriteTo(msg, peer.LocalAddr()); err != nil {
		t.Fatalf("send to the peer: %v", err)
	}
	relay.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := relay.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], msg) || from.String() != peer.LocalAddr().String() {
		t.Fatalf("echo through the relay: %q from %v, %v", buf[:n], from, err)
	}

	// 10.0.0.0/8 is private and not in --allow-peer: turnd refuses it.
	if _, err := relay.WriteTo(msg, &net.UDPAddr{IP: net.IPv4(10, 255, 255, 1), Port: 9}); err == nil {
		t.Error("turnd granted a permission for 10.255.255.1")
	}
	_, fams := scrape(t, "http://"+s.published("turnd", "9102")+"/metrics")
	if v, _ := value(fams, "turnd_permission_denials_total", map[string]string{"reason": "private"}); v < 1 {
		t.Errorf("turnd_permission_denials_total{reason=private} = %v, want >= 1", v)
	}
	if v, _ := value(fams, "turnd_relayed_packets_total", nil); v < 2 {
		t.Errorf("turnd_relayed_packets_total = %v, want >= 2", v)
	}
}
