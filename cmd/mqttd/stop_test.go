package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/p2pd-go/p2pd/internal/testload"
)

// startMqttd runs this test binary as mqttd and returns it with its MQTT
// address and its log (complete once Wait has returned).
func startMqttd(t *testing.T) (*exec.Cmd, string, *lockedLog) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--allow-anonymous", "--publish-rate", "0", "--log-format", "json")
	cmd.Env = append(os.Environ(), "MQTTD_TEST_RUN_MAIN=1")
	log := &lockedLog{serving: make(chan string, 1)}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-log.serving:
		return cmd, a, log
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("mqttd did not report serving:\n%s", log.String())
		return nil, "", nil
	}
}

// lockedLog collects a process's JSON log and reports the MQTT address of
// its "mqttd serving" line.
type lockedLog struct {
	mu      sync.Mutex
	b       strings.Builder
	line    []byte
	serving chan string
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	l.line = append(l.line, p...)
	for {
		i := bytes.IndexByte(l.line, '\n')
		if i < 0 {
			break
		}
		var m map[string]any
		if json.Unmarshal(l.line[:i], &m) == nil && m["msg"] == "mqttd serving" {
			tcp, _ := m["tcp"].(string)
			select {
			case l.serving <- tcp:
			default:
			}
		}
		l.line = l.line[i+1:]
	}
	return len(p), nil
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// mqttdLoad keeps mqttd lightly busy until stop closes: a paho client
// publishing QoS 1 to a topic it subscribes to, and raw connections that
// send CONNECT and stay open.
func mqttdLoad(t *testing.T, addr string, stop <-chan struct{}, wg *sync.WaitGroup) {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	topic := "p2pd/" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(k))
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("stop-%d", time.Now().UnixNano())).
		SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("paho connect: %v", tok.Error())
	}
	c.Subscribe(topic, 1, func(paho.Client, paho.Message) {}).WaitTimeout(10 * time.Second)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer c.Disconnect(0)
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.Publish(topic, 1, false, []byte("x")).WaitTimeout(time.Second)
		}
	}()
	// Client ids r..z: some sessions are taken over too.
	testload.TCP(addr, func(i int) []byte {
		return []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 1, 'r' + byte(i%9)}
	}, stop, wg)
}

// Every stop under light load ends mqttd promptly; the bound only tells a
// hang apart (not a timing assertion).
func TestStopsUnderLoadEveryTime(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and stops the program many times")
	}
	const bound = 15 * time.Second
	for i := range 15 {
		cmd, addr, log := startMqttd(t)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		mqttdLoad(t, addr, stop, &wg)
		time.Sleep(time.Duration(20+i%5*15) * time.Millisecond) // vary where the stop lands
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("stop %d: exit %v\n%s", i, err, log.String())
			}
		case <-time.After(bound):
			_ = cmd.Process.Signal(syscall.SIGQUIT) // its goroutine dump shows where it hangs
			<-done
			t.Fatalf("stop %d: mqttd still running %v after SIGTERM:\n%s", i, bound, log.String())
		}
		close(stop)
		wg.Wait()
	}
}
