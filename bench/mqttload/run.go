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
	size               int
	label              string
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
	fs.IntVar(&o.window, "window", 16, "per publisher, messages sent but not yet delivered everywhere")
	fs.IntVar(&o.size, "size", 256, "payload bytes (>= 16)")
	fs.StringVar(&o.label, "label", "", "name printed in the result line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.pubs < 1 || o.subs < 1 || o.size < 16 || o.window < 1 || o.qos < 0 || o.qos > 2 || o.seconds <= 0 || o.seconds > 600 {
		return errors.New("run: bad flags")
	}
	if !o.fanout && o.pubs != o.subs {
		return errors.New("run: without -fanout, -pubs must equal -subs")
	}
	return run(o)
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

func run(o runOpts) error {
	topics := make([]string, o.pubs)
	trackers := make([]*tracker, o.pubs)
	for i := range topics {
		topics[i] = nodeTopic()
		need := 1
		if o.fanout {
			need = o.subs
		}
		trackers[i] = &tracker{need: need, count: map[uint64]int{}, slots: make(chan struct{}, o.window)}
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
		}
	}
	for i := 0; i < o.subs; i++ {
		c, err := connect(o, fmt.Sprintf("mqttload-sub-%d-%d", i, time.Now().UnixNano()))
		if err != nil {
			return err
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
			return fmt.Errorf("subscribe: %v", tok.Error())
		}
		for t, code := range tok.(*paho.SubscribeToken).Result() {
			if code >= 0x80 {
				return fmt.Errorf("subscribe %s refused (%#x)", t, code)
			}
		}
	}
	pubs := make([]paho.Client, o.pubs)
	for i := range pubs {
		c, err := connect(o, fmt.Sprintf("mqttload-pub-%d-%d", i, time.Now().UnixNano()))
		if err != nil {
			return err
		}
		clients = append(clients, c)
		pubs[i] = c
	}

	stop := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	for i := range pubs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			payload := make([]byte, o.size)
			binary.BigEndian.PutUint32(payload[0:4], uint32(i))
			for seq := uint32(0); ; seq++ {
				select {
				case <-stop:
					return
				case <-trackers[i].slots:
				case <-time.After(2 * time.Second): // a lost message frees its slot late
				}
				p := append([]byte(nil), payload...)
				binary.BigEndian.PutUint32(p[4:8], seq)
				binary.BigEndian.PutUint64(p[8:16], uint64(time.Now().UnixNano()))
				pubs[i].Publish(topics[i], byte(o.qos), false, p)
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

	latMu.Lock()
	defer latMu.Unlock()
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	fmt.Printf("result label=%s msgs_per_s=%.0f p50_ms=%.3f p99_ms=%.3f received=%d sent=%d\n",
		o.label, float64(received.Load())/elapsed.Seconds(), pct(0.50), pct(0.99), received.Load(), sent.Load())
	return nil
}
