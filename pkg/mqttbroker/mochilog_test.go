package mqttbroker

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// lockedBuf is a bytes.Buffer safe for concurrent log writes.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A refused MQTT 3.1.1 publish made mochi log the whole packet, payload as
// decimal bytes; now no level of the log carries a payload.
func TestRefusedPublishLogsNoPayload(t *testing.T) {
	var buf lockedBuf
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := Start(testConfig(t), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	payload := bytes.Repeat([]byte("Z"), 60_000)
	for range 3 {
		rc, _ := connectRaw(t, b.Addr("tcp"), 4, userName, userPass)
		rc.send(publishPacket("outside/p2pd", 1, 9, payload)) // the ACL refuses it: 3.1.1 is disconnected
		for {                                                 // mochi may send a DISCONNECT first, then closes
			if _, err := rc.recv(); err != nil {
				break
			}
		}
	}
	b.Close()
	out := buf.String()
	if strings.Contains(out, "ZZZZ") || strings.Contains(out, "90 90 90") {
		t.Fatalf("the log carries the payload (%d bytes of log)", len(out))
	}
	if len(out) > 20_000 {
		t.Fatalf("%d bytes of log for three refused publishes", len(out))
	}
}

// mochi logged "client store quota reached" once per message; a burst of
// them is one line (and a count) per second now.
func TestMochiLinesRateLimited(t *testing.T) {
	var buf lockedBuf
	h := newMochiLog(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log := slog.New(h).With("component", "mochi")
	start := time.Now()
	pk := publishPacket("p2pd/x", 1, 3, []byte("secret-payload"))
	for range 1000 {
		log.Warn("client store quota reached", "client", "c1", "packet", pk)
		log.Debug("failed publishing packet", "packet", &pk, "raw", []byte("secret-payload"))
	}
	log.Info("attached listener", "id", "tcp")
	log.Info("attached listener", "id", "ws")
	elapsed := time.Since(start)
	out := buf.String()
	max := 1 + int(elapsed/time.Second)
	for _, msg := range []string{"client store quota reached", "failed publishing packet"} {
		if n := strings.Count(out, msg); n < 1 || n > max {
			t.Errorf("%q logged %d times in %v, want 1 to %d", msg, n, elapsed, max)
		}
	}
	if strings.Count(out, "attached listener") != 2 {
		t.Errorf("each listener's line should be kept:\n%s", out)
	}
	if strings.Contains(out, "secret-payload") || !strings.Contains(out, "payload_bytes=14") || !strings.Contains(out, "raw_bytes=14") {
		t.Fatalf("packet not summarised:\n%s", out)
	}
	if !strings.Contains(out, "type=Publish") && !strings.Contains(out, "type="+packets.PacketNames[packets.Publish]) {
		t.Fatalf("no packet type in the summary:\n%s", out)
	}
}
