package mqttbroker

import (
	"context"
	"log/slog"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// mochiLog is the slog handler mochi logs through. mochi logs lines that
// any client can trigger at will ("client store quota reached" once per
// message, "error processing packet" for every refused 3.1.1 publish), and
// with them whole packets, payload included as decimal bytes (about 187 KB
// of log for a 65 KB publish). So every line is rate limited per message
// text (one per second, the next one says how many were suppressed), and a
// packet is logged as a summary: type, QoS, packet id, topic and payload
// size, never the payload.
type mochiLog struct {
	next     slog.Handler
	throttle *logThrottle
}

func newMochiLog(next slog.Handler) *mochiLog {
	return &mochiLog{next: next, throttle: newLogThrottle(time.Second)}
}

func (h *mochiLog) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *mochiLog) Handle(ctx context.Context, r slog.Record) error {
	now := r.Time
	if now.IsZero() {
		now = time.Now()
	}
	ok, suppressed := h.throttle.allow(throttleKey(r), now)
	if !ok {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redact(a))
		return true
	})
	if suppressed > 0 {
		out.AddAttrs(slog.Int64("suppressed_since_last", suppressed))
	}
	return h.next.Handle(ctx, out)
}

// throttleKey is the message text. Info lines (start, listeners, stop; no
// client can cause them) also key on their attributes, so the line of each
// listener is kept.
func throttleKey(r slog.Record) string {
	if r.Level != slog.LevelInfo {
		return r.Message
	}
	k := r.Message
	r.Attrs(func(a slog.Attr) bool {
		k += "|" + a.Value.String()
		return true
	})
	return k
}

func (h *mochiLog) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = redact(a)
	}
	return &mochiLog{next: h.next.WithAttrs(red), throttle: h.throttle}
}

func (h *mochiLog) WithGroup(name string) slog.Handler {
	return &mochiLog{next: h.next.WithGroup(name), throttle: h.throttle}
}

// redact replaces packets and byte slices by what may be logged about them.
func redact(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, x := range g {
			red[i] = redact(x)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case packets.Packet:
			return slog.Attr{Key: a.Key, Value: packetSummary(&x)}
		case *packets.Packet:
			if x != nil {
				return slog.Attr{Key: a.Key, Value: packetSummary(x)}
			}
		case []byte:
			return slog.Int(a.Key+"_bytes", len(x))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func packetSummary(pk *packets.Packet) slog.Value {
	attrs := []slog.Attr{
		slog.String("type", packets.PacketNames[pk.FixedHeader.Type]),
		slog.Int("qos", int(pk.FixedHeader.Qos)),
		slog.Int("id", int(pk.PacketID)),
	}
	if pk.FixedHeader.Type == packets.Publish {
		attrs = append(attrs, slog.String("topic", pk.TopicName), slog.Int("payload_bytes", len(pk.Payload)))
	}
	return slog.GroupValue(attrs...)
}
