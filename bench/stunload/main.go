// Command stunload is a bounded STUN Binding load generator for benchmarks:
// it keeps a window of requests in flight on each of several UDP sockets for
// a fixed duration and reports requests/s and latency percentiles.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

type result struct {
	Server     string  `json:"server"`
	Requests   int     `json:"requests"`
	Lost       int     `json:"lost"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
	P50Micros  float64 `json:"p50_us"`
	P99Micros  float64 `json:"p99_us"`
	P999Micros float64 `json:"p999_us"`
}

func main() {
	server := flag.String("server", "127.0.0.1:3478", "STUN server address (UDP)")
	duration := flag.Duration("duration", 5*time.Second, "how long to send (the run stops by itself)")
	sockets := flag.Int("sockets", 8, "UDP sockets (distinct source ports)")
	window := flag.Int("window", 4, "requests in flight per socket")
	classic := flag.Bool("classic", false, "send RFC 3489 requests (no magic cookie)")
	timeout := flag.Duration("timeout", 500*time.Millisecond, "a request unanswered this long counts as lost and is replaced")
	format := flag.String("format", "json", "output: json, or tsv (requests/s, p50 us, p99 us, lost)")
	flag.Parse()
	r, err := run(*server, *duration, *sockets, *window, *classic, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stunload:", err)
		os.Exit(1)
	}
	if *format == "tsv" {
		fmt.Printf("%.0f\t%.0f\t%.0f\t%d\n", r.PerSecond, r.P50Micros, r.P99Micros, r.Lost)
		return
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

type worker struct {
	conn    *net.UDPConn
	req     []byte
	sent    []time.Time
	seq     []uint32
	lat     []time.Duration
	lost    int
	timeout time.Duration
}

func run(server string, d time.Duration, sockets, window int, classic bool, timeout time.Duration) (result, error) {
	if sockets < 1 || window < 1 || d <= 0 {
		return result{}, errors.New("sockets, window and duration must be positive")
	}
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	ws := make([]*worker, sockets)
	for i := range ws {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return result{}, err
		}
		defer c.Close()
		req := make([]byte, 20)
		binary.BigEndian.PutUint16(req[0:2], 0x0001)
		if classic {
			_, _ = rand.Read(req[4:8])
		} else {
			binary.BigEndian.PutUint32(req[4:8], 0x2112A442)
		}
		_, _ = rand.Read(req[8:12])
		ws[i] = &worker{conn: c, req: req, sent: make([]time.Time, window), seq: make([]uint32, window),
			lat: make([]time.Duration, 0, 1<<16), timeout: timeout}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	var all []time.Duration
	lost := 0
	for _, w := range ws {
		all = append(all, w.lat...)
		lost += w.lost
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(p * float64(len(all)-1))
		return float64(all[i].Nanoseconds()) / 1e3
	}
	return result{Server: server, Requests: len(all), Lost: lost, Seconds: elapsed,
		PerSecond: float64(len(all)) / elapsed, P50Micros: pct(0.50), P99Micros: pct(0.99), P999Micros: pct(0.999)}, nil
}

// send transmits a new request in slot i (transaction id carries slot and
// sequence number).
func (w *worker) send(i int) {
	w.seq[i]++
	binary.BigEndian.PutUint32(w.req[12:16], uint32(i))
	binary.BigEndian.PutUint32(w.req[16:20], w.seq[i])
	w.sent[i] = time.Now()
	_, _ = w.conn.Write(w.req)
}

func (w *worker) loop(ctx context.Context) {
	for i := range w.sent {
		w.send(i)
	}
	buf := make([]byte, 1500)
	for ctx.Err() == nil {
		_ = w.conn.SetReadDeadline(time.Now().Add(w.timeout / 2))
		n, err := w.conn.Read(buf)
		now := time.Now()
		if err == nil && n >= 20 && binary.BigEndian.Uint16(buf[0:2]) == 0x0101 {
			i := int(binary.BigEndian.Uint32(buf[12:16]))
			if i < len(w.seq) && binary.BigEndian.Uint32(buf[16:20]) == w.seq[i] {
				w.lat = append(w.lat, now.Sub(w.sent[i]))
				w.send(i)
				continue
			}
		}
		for i, t := range w.sent {
			if now.Sub(t) > w.timeout {
				w.lost++
				w.send(i)
			}
		}
	}
}
