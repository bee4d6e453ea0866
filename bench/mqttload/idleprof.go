package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/p2pd-go/p2pd/pkg/mqttbroker"
)

// idleProfCmd runs mqttd's broker in this process, opens n idle MQTT
// connections to it and reports heap and goroutine-stack bytes per
// connection, with heap and goroutine profiles for `go tool pprof`. The
// client side of each connection (a socket, no goroutine) is in the same
// process; its allocations show in the profile under net.Dial.
func idleProfCmd(args []string) error {
	fs := flag.NewFlagSet("mqttload idleprof", flag.ContinueOnError)
	n := fs.Int("n", 10000, "connections")
	dir := fs.String("dir", ".", "directory for heap.pprof and goroutine.pprof")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 50000 {
		return errors.New("idleprof: need 1 <= -n <= 50000")
	}
	lim := mqttbroker.DefaultLimits()
	lim.MaxClients, lim.MaxSessions = 0, 0
	b, err := mqttbroker.Start(mqttbroker.Config{TCP: "127.0.0.1:0", AllowAnonymous: true, ConnectTimeout: 10 * time.Second, Limits: lim},
		nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer b.Close()
	before := memNow()
	conns, err := openIdleConns(*n, b.Addr("tcp"), func(i int) string { return fmt.Sprintf("idle-%d", i) })
	defer closeAll(conns)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	after := memNow()
	for name, file := range map[string]string{"heap": "heap.pprof", "goroutine": "goroutine.pprof"} {
		f, err := os.Create(filepath.Join(*dir, file))
		if err != nil {
			return err
		}
		if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	per := func(a, b uint64) float64 { return float64(int64(b)-int64(a)) / float64(*n) / 1024 }
	fmt.Printf("result conns=%d heap_kib_per_conn=%.2f stack_kib_per_conn=%.2f goroutines_per_conn=%.2f\n",
		*n, per(before.heap, after.heap), per(before.stack, after.stack), float64(after.goroutines-before.goroutines)/float64(*n))
	return nil
}

type memSample struct {
	heap, stack uint64
	goroutines  int
}

func memNow() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapInuse, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}
