package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

type runOpts struct {
	broker, user, pass string
	pubs, subs         int
	fanout             bool
	qos                int
	seconds            float64
	window             int
	inflight           int           // >0: open loop, this many publishes awaiting the broker's PUBACK
	drain              time.Duration // after the run, wait this long for deliveries still on their way
	complete           bool          // fail when a message is missing after the drain
	size               int
	rate               float64 // >0: paced, this many deliveries/s over all subscribers
	burst              bool    // paced: every publisher sends at the same instants (see phase)
	label              string
}

// phase is when, within each interval of a paced run, publisher i of n
// sends: spread evenly, so that the broker sees one publish every
// interval/n, or all at the start (burst), so that it sees n at once.
func phase(i, n int, interval time.Duration, burst bool) time.Duration {
	if burst || n < 1 {
		return 0
	}
	return interval * time.Duration(i) / time.Duration(n)
}

// result is what a run measured. missing counts deliveries that never came:
// every message sent, to every subscriber of its topic.
type result struct {
	msgsPerS, p50, p99 float64
	received, sent     int64
	total, missing     int64 // deliveries expected (whole run, warm-up too) and not made
	duplicates         int64
}

// tracker counts deliveries per message so a publisher can keep at most
// window messages not yet delivered to all of its subscribers (a closed
// loop: latency then measures the broker, not a queue the generator built).
type tracker struct {
	need  int // deliveries per message
	mu    sync.Mutex
	count map[uint64]int
	slots chan struct{}
}

func (t *tracker) delivered(seq uint64) {
	t.mu.Lock()
	t.count[seq]++
	done := t.count[seq] == t.need
	if done {
		delete(t.count, seq)
	}
	t.mu.Unlock()
	if done {
		select {
		case t.slots <- struct{}{}:
		default:
		}
	}
}

func runCmd(args []string) error {
	var o runOpts
	fs := flag.NewFlagSet("mqttload run", flag.ContinueOnError)
	fs.StringVar(&o.broker, "broker", "tcp://127.0.0.1:1883", "broker URL")
	fs.StringVar(&o.user, "user", "", "username (empty: anonymous)")
	fs.StringVar(&o.pass, "pass", "", "password")
	fs.IntVar(&o.pubs, "pubs", 10, "publishers")
	fs.IntVar(&o.subs, "subs", 10, "subscribers")
	fs.BoolVar(&o.fanout, "fanout", false, "every subscriber subscribes to every publisher's topic (else publisher i -> subscriber i)")
	fs.IntVar(&o.qos, "qos", 0, "QoS of publishes and subscriptions")
	fs.Float64Var(&o.seconds, "seconds", 5, "measured run time")
	fs.IntVar(&o.window, "window", 16, "per publisher, messages sent but not yet delivered everywhere (closed loop)")
	fs.IntVar(&o.inflight, "inflight", 0, "per publisher, QoS 1/2 publishes awaiting the broker's PUBACK (open loop: the broker's queues fill); 0 uses -window")
	fs.DurationVar(&o.drain, "drain", 10*time.Second, "after the run, wait up to this long for every message to arrive before counting the missing ones")
	fs.BoolVar(&o.complete, "complete", false, "exit with an error when any message is missing")
	fs.IntVar(&o.size, "size", 256, "payload bytes (>= 16)")
	fs.Float64Var(&o.rate, "rate", 0, "paced load: deliveries/s over all subscribers, whatever the window (0: as fast as -window or -inflight allow)")
	fs.BoolVar(&o.burst, "burst", false, "paced load: all publishers send at the same instants, in bursts of -pubs messages (default: their sends are spread evenly over each interval)")
	fs.StringVar(&o.label, "label", "", "name printed in the result line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.pubs < 1 || o.subs < 1 || o.size < 16 || o.window < 1 || o.qos < 0 || o.qos > 2 || o.seconds <= 0 || o.seconds > 600 || o.rate < 0 {
		return errors.New("run: bad flags")
	}
	if !o.fanout && o.pubs != o.subs {
		return errors.New("run: without -fanout, -pubs must equal -subs")
	}
	if o.inflight < 0 || (o.inflight > 0 && o.qos == 0) {
		return errors.New("run: -inflight needs -qos 1 or 2")
	}
	r, err := run(o)
	if err != nil {
		return err
	}
	fmt.Printf("result label=%s msgs_per_s=%.0f p50_ms=%.3f p99_ms=%.3f received=%d sent=%d deliveries=%d missing=%d duplicates=%d\n",
		o.label, r.msgsPerS, r.p50, r.p99, r.received, r.sent, r.total, r.missing, r.duplicates)
	if o.complete && r.missing > 0 {
		return fmt.Errorf("run: %d of %d deliveries missing", r.missing, r.total)
	}
	return nil
}

// ledger records every message sent and every delivery, to count the
// missing ones at the end.
type ledger struct {
	need int
	mu   sync.Mutex
	got  [][]uint16 // per publisher, deliveries per sequence number
	sent []uint32   // per publisher, messages sent
}

func newLedger(pubs, need int) *ledger {
	return &ledger{need: need, got: make([][]uint16, pubs), sent: make([]uint32, pubs)}
}

func (l *ledger) publish(pub int, seq uint32) {
	l.mu.Lock()
	l.sent[pub] = seq + 1
	for uint32(len(l.got[pub])) <= seq {
		l.got[pub] = append(l.got[pub], 0)
	}
	l.mu.Unlock()
}

func (l *ledger) deliver(pub int, seq uint32) {
	l.mu.Lock()
	if pub < len(l.got) && seq < uint32(len(l.got[pub])) {
		l.got[pub][seq]++
	}
	l.mu.Unlock()
}

// count returns deliveries expected, missing and duplicated so far.
func (l *ledger) count() (total, missing, dups int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, n := range l.sent {
		for _, c := range l.got[p][:n] {
			total += int64(l.need)
			if int(c) < l.need {
				missing += int64(l.need - int(c))
			} else {
				dups += int64(int(c) - l.need)
			}
		}
	}
	return total, missing, dups
}

func connect(o runOpts, id string) (paho.Client, error) {
	opts := paho.NewClientOptions().AddBroker(o.broker).SetClientID(id).
		SetUsername(o.user).SetPassword(o.pass).SetAutoReconnect(false).
		SetOrderMatters(false).SetCleanSession(true).SetKeepAlive(60 * time.Second).
		SetConnectTimeout(10 * time.Second).SetWriteTimeout(10 * time.Second).
		SetMaxResumePubInFlight(o.window).SetProtocolVersion(4)
	c := paho.NewClient(opts)
	t := c.Connect()
	if !t.WaitTimeout(20*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v", id, t.Error())
	}
	return c, nil
}

func run(o runOpts) (result, error) {
	var r result
	var book *ledger
	topics := make([]string, o.pubs)
	trackers := make([]*tracker, o.pubs)
	for i := range topics {
		topics[i] = nodeTopic()
		need := 1
		if o.fanout {
			need = o.subs
		}
		trackers[i] = &tracker{need: need, count: map[uint64]int{}, slots: make(chan struct{}, o.window)}
		if i == 0 {
			book = newLedger(o.pubs, need)
		}
		for j := 0; j < o.window; j++ {
			trackers[i].slots <- struct{}{}
		}
	}
	var (
		measuring atomic.Bool
		received  atomic.Int64
		latMu     sync.Mutex
		lat       []time.Duration
	)
	var clients []paho.Client
	defer func() {
		for _, c := range clients {
			c.Disconnect(100)
		}
	}()
	handler := func(_ paho.Client, m paho.Message) {
		p := m.Payload()
		if len(p) < 16 {
			return
		}
		pub := int(binary.BigEndian.Uint32(p[0:4]))
		seq := uint64(binary.BigEndian.Uint32(p[4:8]))
		sent := int64(binary.BigEndian.Uint64(p[8:16]))
		if measuring.Load() {
			received.Add(1)
			d := time.Duration(time.Now().UnixNano() - sent)
			latMu.Lock()
			lat = append(lat, d)
			latMu.Unlock()
		}
		if pub < len(trackers) {
			trackers[pub].delivered(seq)
			book.deliver(pub, uint32(seq))
		}
	}
	for i := 0; i < o.subs; i++ {
		c, err := connect(o, fmt.Sprintf("mqttload-sub-%d-%d", i, time.Now().UnixNano()))
		if err != nil {
			return r, err
		}
		clients = append(clients, c)
		filters := map[string]byte{topics[i%o.pubs]: byte(o.qos)}
		if o.fanout {
			filters = map[string]byte{}
			for _, t := range topics {
				filters[t] = byte(o.qos)
			}
		}
		tok := c.SubscribeMultiple(filters, handler)
		if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			return r, fmt.Errorf("subscribe: %v", tok.Error())
		}
		for t, code := range tok.(*paho.SubscribeToken).Result() {
			if code >= 0x80 {
				return r, fmt.Errorf("subscribe %s refused (%#x)", t, code)
			}
		}
	}
	pubs := make([]paho.Client, o.pubs)
	for i := range pubs {
		c, err := connect(o, fmt.Sprintf("mqttload-pub-%d-%d", i, time.Now().UnixNano()))
		if err != nil {
			return r, err
		}
		clients = append(clients, c)
		pubs[i] = c
	}

	stop := make(chan struct{})
	var sent atomic.Int64
	var interval time.Duration // paced: each publisher sends once per interval
	if o.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(o.pubs*book.need) / o.rate)
	}
	base := time.Now()
	var wg sync.WaitGroup
	for i := range pubs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			payload := make([]byte, o.size)
			binary.BigEndian.PutUint32(payload[0:4], uint32(i))
			// Open loop: at most o.inflight publishes await the broker's
			// PUBACK; a waiter frees a slot as each completes, oldest first.
			slots := make(chan struct{}, max(o.inflight, 1))
			acks := make(chan paho.Token, max(o.inflight, 1))
			acked := make(chan struct{})
			if o.inflight > 0 {
				go func() {
					defer close(acked)
					for t := range acks {
						t.WaitTimeout(30 * time.Second)
						<-slots
					}
				}()
				defer func() { close(acks); <-acked }()
			}
			next := base.Add(phase(i, len(pubs), interval, o.burst))
			for seq := uint32(0); ; seq++ {
				if interval > 0 {
					next = next.Add(interval)
					select {
					case <-stop:
						return
					case <-time.After(time.Until(next)):
					}
				} else if o.inflight == 0 {
					select {
					case <-stop:
						return
					case <-trackers[i].slots:
					case <-time.After(2 * time.Second): // a lost message frees its slot late
					}
				} else {
					select {
					case <-stop:
						return
					case slots <- struct{}{}:
					}
				}
				p := append([]byte(nil), payload...)
				binary.BigEndian.PutUint32(p[4:8], seq)
				binary.BigEndian.PutUint64(p[8:16], uint64(time.Now().UnixNano()))
				book.publish(i, seq)
				tok := pubs[i].Publish(topics[i], byte(o.qos), false, p)
				if o.inflight > 0 {
					acks <- tok // never blocks: at most o.inflight tokens are out
				}
				if measuring.Load() {
					sent.Add(1)
				}
			}
		}(i)
	}
	time.Sleep(time.Second) // warm up
	measuring.Store(true)
	start := time.Now()
	time.Sleep(time.Duration(o.seconds * float64(time.Second)))
	measuring.Store(false)
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	// Count what never arrived, after a bounded wait for what is on its way.
	for deadline := time.Now().Add(o.drain); ; time.Sleep(100 * time.Millisecond) {
		if _, missing, _ := book.count(); missing == 0 || time.Now().After(deadline) {
			break
		}
	}
	r.total, r.missing, r.duplicates = book.count()

	latMu.Lock()
	defer latMu.Unlock()
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	r.msgsPerS = float64(received.Load()) / elapsed.Seconds()
	r.p50, r.p99 = pct(0.50), pct(0.99)
	r.received, r.sent = received.Load(), sent.Load()
	return r, nil
}
