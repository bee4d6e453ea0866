package mqttbroker

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

// mosq runs a mosquitto client with a bounded lifetime and returns its
// combined output and error.
func mosq(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// TestMosquittoClients drives the broker with Debian's mosquitto_pub and
// mosquitto_sub over MQTT 3.1.1 and 5.
func TestMosquittoClients(t *testing.T) {
	testenv.RequireTools(t, "mosquitto_pub", "mosquitto_sub")
	b, _ := startBroker(t, testConfig(t))
	host, port := hostPort(t, b.Addr("tcp"))
	base := []string{"-h", host, "-p", port}
	login := func(user, pass string) []string {
		return append(append([]string{}, base...), "-u", user, "-P", pass)
	}

	for _, v := range []string{"mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			t.Run("publish subscribe", func(t *testing.T) {
				topic := "p2pd/" + newNodeID(t)
				// A retained message makes the order of sub and pub irrelevant.
				if out, err := mosq(t, "mosquitto_pub", append(login(userName, userPass), "-V", v, "-q", "1", "-r", "-t", topic, "-m", "hello "+v)...); err != nil {
					t.Fatalf("mosquitto_pub: %v\n%s", err, out)
				}
				out, err := mosq(t, "mosquitto_sub", append(login(userName, userPass), "-V", v, "-q", "1", "-t", topic, "-C", "1", "-W", "20")...)
				if err != nil || strings.TrimSpace(out) != "hello "+v {
					t.Fatalf("mosquitto_sub: %v, output %q", err, out)
				}
			})
			t.Run("live message", func(t *testing.T) {
				topic := "p2pd/" + newNodeID(t)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				sub := exec.CommandContext(ctx, "mosquitto_sub", append(login(userName, userPass), "-V", v, "-t", topic, "-C", "1")...)
				var out bytes.Buffer
				sub.Stdout, sub.Stderr = &out, &out
				if err := sub.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- sub.Wait() }()
				// The subscriber's SUBACK is not visible from here, so publish
				// (QoS 0, not retained) until it has a message and exits.
				pub := mustPaho(t, "tcp://"+b.Addr("tcp"), adminName, adminPass)
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case err := <-done:
						if err != nil || strings.TrimSpace(out.String()) != "live "+v {
							t.Fatalf("mosquitto_sub: %v, output %q", err, out.String())
						}
						return
					case <-tick.C:
						pub.Publish(topic, 0, false, []byte("live "+v))
					}
				}
			})
			t.Run("wildcard refused", func(t *testing.T) {
				out, _ := mosq(t, "mosquitto_sub", append(login(userName, userPass), "-V", v, "-t", "p2pd/#", "-C", "1", "-W", "5")...)
				if !strings.Contains(out, "denied") {
					t.Fatalf("mosquitto_sub p2pd/# was not refused: %q", out)
				}
			})
			t.Run("sys refused to a user", func(t *testing.T) {
				out, _ := mosq(t, "mosquitto_sub", append(login(userName, userPass), "-V", v, "-t", "$SYS/#", "-C", "1", "-W", "5")...)
				if !strings.Contains(out, "denied") {
					t.Fatalf("mosquitto_sub $SYS/# was not refused: %q", out)
				}
			})
			t.Run("sys allowed to an admin", func(t *testing.T) {
				out, err := mosq(t, "mosquitto_sub", append(login(adminName, adminPass), "-V", v, "-t", "$SYS/broker/version", "-C", "1", "-W", "20")...)
				if err != nil || strings.TrimSpace(out) == "" {
					t.Fatalf("admin $SYS: %v, output %q", err, out)
				}
			})
			t.Run("bad password", func(t *testing.T) {
				out, err := mosq(t, "mosquitto_sub", append(login(userName, "wrong"), "-V", v, "-t", "p2pd/"+newNodeID(t), "-C", "1", "-W", "5")...)
				if err == nil {
					t.Fatalf("bad password accepted: %q", out)
				}
				if low := strings.ToLower(out); !strings.Contains(low, "not authori") && !strings.Contains(low, "bad user name or password") {
					t.Fatalf("bad password: unexpected output %q", out)
				}
			})
		})
	}
}
