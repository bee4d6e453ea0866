package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// startMqttd runs this test binary as mqttd and returns it with its MQTT address.
func startMqttd(t *testing.T) (*exec.Cmd, string, *lockedLog) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--listen", "127.0.0.1:0", "--ws-listen", "", "--admin", "",
		"--allow-anonymous", "--publish-rate", "0", "--log-format", "json")
	cmd.Env = append(os.Environ(), "MQTTD_TEST_RUN_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log := &lockedLog{}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.add(sc.Text())
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "mqttd serving" {
				tcp, _ := m["tcp"].(string)
				addr <- tcp
			}
		}
	}()
	select {
	case a := <-addr:
		return cmd, a, log
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("mqttd did not report serving")
		return nil, "", nil
	}
}

// lockedLog collects a process's log lines.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
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
	wg.Add(2)
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
	go func() {
		defer wg.Done()
		var held []net.Conn
		defer func() {
			for _, h := range held {
				h.Close()
			}
		}()
		connect := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 1, 'r'}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			h, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			connect[len(connect)-1] = 'a' + byte(i%26) // client ids r..z: sessions taken over too
			_, _ = h.Write(connect)
			if held = append(held, h); len(held) > 20 {
				held[0].Close()
				held = held[1:]
			}
		}
	}()
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
