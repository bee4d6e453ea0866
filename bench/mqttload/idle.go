package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// idleCmd opens n MQTT 3.1.1 connections (anonymous, keepalive 600 s) that
// then stay silent, and prints the broker's resident memory before and after.
// A plain CONNECT keeps the generator small enough to hold 10k connections.
func idleCmd(args []string) error {
	fs := flag.NewFlagSet("mqttload idle", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:1883", "broker TCP address")
	n := fs.Int("n", 10000, "connections")
	pid := fs.Int("pid", 0, "broker process id, for its resident memory (VmRSS)")
	settle := fs.Duration("settle", 3*time.Second, "wait after the last CONNACK before reading memory")
	label := fs.String("label", "", "name printed in the result line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 100000 || *pid <= 0 {
		return errors.New("idle: need 1 <= -n <= 100000 and -pid")
	}
	before, err := rssKiB(*pid)
	if err != nil {
		return err
	}
	conns, err := openIdleConns(*n, *addr, func(i int) string { return fmt.Sprintf("idle-%d-%d", i, time.Now().UnixNano()) })
	defer closeAll(conns)
	if err != nil {
		return err
	}
	time.Sleep(*settle)
	after, err := rssKiB(*pid)
	if err != nil {
		return err
	}
	fmt.Printf("result label=%s conns=%d rss_before_mib=%.1f rss_after_mib=%.1f kib_per_conn=%.1f\n",
		*label, *n, float64(before)/1024, float64(after)/1024, float64(after-before)/float64(*n))
	return nil
}

// openIdleConns opens n idle MQTT connections to addr, 64 at a time; the
// conns opened so far are returned with the first error.
func openIdleConns(n int, addr string, id func(int) string) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := openIdle(addr, id(i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("connection %d: %w", i, err)
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	return conns, firstErr
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

func openIdle(addr, id string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0x02, 0x58, byte(len(id) >> 8), byte(len(id))}
	body = append(body, id...)
	pkt := append([]byte{0x10, byte(len(body))}, body...)
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(pkt); err != nil {
		c.Close()
		return nil, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		c.Close()
		return nil, fmt.Errorf("no CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNACK refused: % x", ack)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS line")
}
