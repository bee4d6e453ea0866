//go:build linux

package mqttbroker

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// Running out of file descriptors made accept fail once and the listener
// stopped for good: every later client hung without a CONNACK. Now it
// retries and serves again once descriptors are free.
func TestListenerSurvivesFileDescriptorExhaustion(t *testing.T) {
	b, _ := startBroker(t, testConfig(t))
	addr := b.Addr("tcp")
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip("no RLIMIT_NOFILE:", err)
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	low := lim
	low.Cur = uint64(len(open) + 20)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip("cannot lower RLIMIT_NOFILE:", err)
	}
	restore := func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) }
	defer restore()
	// Dial until the process has no descriptor left: the broker's accept
	// then fails with EMFILE for the connections still in the backlog.
	var held []net.Conn
	for range 100 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		held = append(held, c)
	}
	time.Sleep(100 * time.Millisecond) // let accept hit the limit (not a timing assertion: any outcome is checked below)
	for _, c := range held {
		c.Close()
	}
	restore()
	rc, code := connectRaw(t, addr, 4, userName, userPass)
	if code != 0 {
		t.Fatalf("CONNACK %#x after the descriptors came back", code)
	}
	rc.conn.Close()
}
