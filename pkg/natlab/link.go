package natlab

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Link shapes the connection between a server or router and the WAN. Each
// setting applies to both directions.
type Link struct {
	Delay time.Duration // one-way delay
	Loss  int           // percent of packets dropped, 0-100
	Rate  string        // tc rate, e.g. "10mbit"; empty means unlimited
}

func (k Link) validate() error {
	if k.Delay < 0 || k.Loss < 0 || k.Loss > 100 {
		return fmt.Errorf("natlab: bad link %+v: delay >= 0, loss 0-100", k)
	}
	return nil
}

// connectWAN links namespace ns (device dev) to the WAN bridge.
func (l *Lab) connectWAN(ns, dev string, k Link) error {
	if err := k.validate(); err != nil {
		return err
	}
	l.mu.Lock()
	l.links++
	port := fmt.Sprintf("w%d", l.links)
	l.mu.Unlock()

	netem := k.Delay > 0 && l.hasNetem()
	if k.Delay > 0 && !netem {
		if err := l.tapPair(ns, dev, port, k.Delay); err != nil {
			return err
		}
	} else {
		if err := run("ip", "link", "add", "name", port, "netns", l.inet, "type", "veth", "peer", "name", dev, "netns", ns); err != nil {
			return err
		}
	}
	if err := run("ip", "-n", l.inet, "link", "set", port, "master", "wan", "up"); err != nil {
		return err
	}
	if err := run("ip", "-n", ns, "link", "set", dev, "up"); err != nil {
		return err
	}
	if err := waitUp(ns, dev); err != nil {
		return err
	}
	ends := [][2]string{{ns, dev}, {l.inet, port}}
	for _, e := range ends {
		if err := shape(e[0], e[1], k, netem); err != nil {
			return err
		}
	}
	return nil
}

// shape applies loss and rate (and delay, with netem) to egress of dev... and
// loss on its ingress, so each direction sees the loss once.
func shape(ns, dev string, k Link, netem bool) error {
	if netem {
		args := []string{"-n", ns, "qdisc", "add", "dev", dev, "root", "netem", "delay", k.Delay.String()}
		if k.Loss > 0 {
			args = append(args, "loss", strconv.Itoa(k.Loss)+"%")
		}
		if k.Rate != "" {
			args = append(args, "rate", k.Rate)
		}
		return run("tc", args...)
	}
	if k.Rate != "" {
		if err := run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", k.Rate, "burst", "32kbit", "latency", "400ms"); err != nil {
			return err
		}
	}
	if k.Loss > 0 {
		// Drop on ingress of both ends: each direction loses Loss percent.
		// numgen's value is in host byte order, so a "< N" comparison is
		// wrong on little-endian machines; a set of N values is exact.
		vals := make([]string, k.Loss)
		for i := range vals {
			vals[i] = strconv.Itoa(i)
		}
		// ARP and IPv6 neighbour discovery are exempt: the link loses data,
		// not its ability to resolve neighbours.
		set := strings.Join(vals, ", ")
		rules := fmt.Sprintf("table netdev natlab_loss_%s {\n  chain in { type filter hook ingress device %q priority 0; policy accept;\n"+
			"    meta protocol ip numgen random mod 100 { %s } drop\n"+
			"    meta protocol ip6 meta l4proto != ipv6-icmp numgen random mod 100 { %s } drop\n  }\n}\n", dev, dev, set, set)
		if _, err := inNS(ns, []byte(rules), "nft", "-f", "-"); err != nil {
			return err
		}
	}
	return nil
}

// hasNetem reports whether this kernel has sch_netem (probed once per lab).
func (l *Lab) hasNetem() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.netem == nil {
		ok := run("tc", "-n", l.inet, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms") == nil
		if ok {
			_ = run("tc", "-n", l.inet, "qdisc", "del", "dev", "lo", "root")
		}
		l.netem = &ok
	}
	return *l.netem
}

// tapPair makes a tap device in ns (dev) and one in the WAN namespace (port)
// and relays frames between them with the given one-way delay: the user-space
// replacement for netem on kernels without it.
func (l *Lab) tapPair(ns, dev, port string, delay time.Duration) error {
	a, err := openTap(ns, dev)
	if err != nil {
		return err
	}
	b, err := openTap(l.inet, port)
	if err != nil {
		a.Close()
		return err
	}
	r := &relay{a: a, b: b, delay: delay}
	r.start()
	l.mu.Lock()
	l.relays = append(l.relays, r)
	l.mu.Unlock()
	return nil
}

// relay moves frames between two taps, each direction through a FIFO that
// releases a frame delay after it was read.
type relay struct {
	a, b  *os.File
	delay time.Duration
	wg    sync.WaitGroup
}

type frame struct {
	due  time.Time
	data []byte
}

func (r *relay) start() {
	for _, dir := range [][2]*os.File{{r.a, r.b}, {r.b, r.a}} {
		q := make(chan frame, 8192)
		r.wg.Add(2)
		go r.read(dir[0], q)
		go r.write(dir[1], q)
	}
}

func (r *relay) read(src *os.File, q chan<- frame) {
	defer r.wg.Done()
	defer close(q)
	buf := make([]byte, 65536)
	for {
		n, err := src.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EIO while the device is down
			continue
		}
		data := append([]byte(nil), buf[:n]...)
		select {
		case q <- frame{due: time.Now().Add(r.delay), data: data}:
		default: // queue full: drop, like a full device queue
		}
	}
}

func (r *relay) write(dst *os.File, q <-chan frame) {
	defer r.wg.Done()
	for f := range q {
		if d := time.Until(f.due); d > 0 {
			time.Sleep(d)
		}
		_, _ = dst.Write(f.data)
	}
}

func (r *relay) close() {
	r.a.Close()
	r.b.Close()
	r.wg.Wait()
}
