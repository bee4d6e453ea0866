package signal

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

// mosquitto is a Debian mosquitto broker started by a test on a loopback
// port. Tests stop it by its pid; cleanup stops it in any case.
type mosquitto struct {
	t    *testing.T
	bin  string
	port int
	conf string
	cmd  *exec.Cmd
	done chan struct{}
}

// startMosquitto starts a broker. With user set, only that user and password
// may connect.
func startMosquitto(t *testing.T, user, pass string) *mosquitto {
	t.Helper()
	m := newMosquitto(t, user, pass)
	m.start()
	return m
}

// newMosquitto prepares a broker on a free port without starting it.
func newMosquitto(t *testing.T, user, pass string) *mosquitto {
	t.Helper()
	paths := testenv.RequireTools(t, "mosquitto", "mosquitto_passwd")
	dir := t.TempDir()
	conf := "listener 0 127.0.0.1\nuser root\npersistence false\nlog_dest stderr\n"
	if user == "" {
		conf += "allow_anonymous true\n"
	} else {
		pw := filepath.Join(dir, "passwd")
		out, err := exec.Command(paths[1], "-b", "-c", pw, user, pass).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
		conf += "allow_anonymous false\npassword_file " + pw + "\n"
	}
	m := &mosquitto{t: t, bin: paths[0], port: freePort(t)}
	m.conf = filepath.Join(dir, "mosquitto.conf")
	conf = "listener " + strconv.Itoa(m.port) + conf[len("listener 0"):]
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop)
	return m
}

func (m *mosquitto) url() string { return fmt.Sprintf("tcp://127.0.0.1:%d", m.port) }

func (m *mosquitto) start() {
	m.t.Helper()
	m.cmd = exec.Command(m.bin, "-c", m.conf)
	m.cmd.Stderr = &testLog{t: m.t, prefix: fmt.Sprintf("mosquitto :%d: ", m.port)}
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(m.cmd, m.done)
	waitFor(m.t, "mosquitto to listen", func() bool {
		select {
		case <-m.done:
			m.t.Fatalf("mosquitto on port %d exited at start", m.port)
		default:
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", m.port))
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// stop kills the broker process (by its pid) and waits for it to exit.
func (m *mosquitto) stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.done
	m.cmd = nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline. It bounds a wait; it does not assert on timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLog forwards a process's output to the test log.
type testLog struct {
	t      *testing.T
	prefix string
}

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Logf("%s%s", l.prefix, p)
	return len(p), nil
}
