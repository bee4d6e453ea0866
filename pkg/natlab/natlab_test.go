package natlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

// world is a lab with a NAT router of one behaviour, a private host behind
// it and a WAN server with two IPv4 addresses running reflectors.
type world struct {
	lab    *Lab
	srv    *Host
	a1, a2 netip.Addr
	r      *Router
	h      *Host
}

func newWorld(t *testing.T, b Behaviour) *world {
	lab := New(t)
	addrs := lab.AllocWAN(2, 0)
	w := &world{lab: lab, srv: lab.AddServer("srv", addrs...), a1: addrs[0], a2: addrs[1]}
	w.r = lab.AddRouter("nat", b)
	w.h = w.r.AddHost("peer")
	return w
}

// outside is the address the world sees for the host (own address if open).
func (w *world) outside() netip.Addr {
	if w.r.Behaviour() == Open {
		return w.h.IP4()
	}
	return w.r.WANAddr()
}

func TestBehaviours(t *testing.T) {
	for _, b := range Behaviours() {
		t.Run(b.String(), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, b)
			t.Run("udp", func(t *testing.T) { checkUDP(t, w, b.Truth()) })
			tcpTruth := b.Truth()
			if b == UDPBlocked { // TCP still passes, NATed like Linux SNAT
				tcpTruth = PortRestrictedCone.Truth()
			}
			t.Run("tcp", func(t *testing.T) { checkTCP(t, w, tcpTruth) })
		})
	}
}

func checkUDP(t *testing.T, w *world, want Truth) {
	listen, m1, m2, m3, ok := udpProbe(t, w, "udp4", func(port int) string { return ":" + strconv.Itoa(port) }, want)
	if !ok {
		return
	}
	t.Logf("local :41000 -> a1:5000 %v, a2:5000 %v, a1:5001 %v", m1, m2, m3)
	if m1.Addr() != w.outside() {
		t.Errorf("mapped address %v, want %v", m1.Addr(), w.outside())
	}
	if got := mappingClass(m1, m2, m3); got != want.Mapping {
		t.Errorf("mapping: got %s, want %s", got, want.Mapping)
	}

	// Filtering: a fresh mapping that has only talked to a1:5000.
	checkUDPFiltering(t, w, listen, want)

	// Port allocation across new mappings (what the delta test measures).
	var ports []int
	for i := 0; i < 4; i++ {
		p := listen(42000 + 7*i)
		mp, err := udpAsk(p, joinHostPort(w.a1, 5000))
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, int(mp.Port()))
	}
	checkDelta(t, want, []int{42000, 42007, 42014, 42021}, ports)
}

// udpReflectorConn is a plain server-side socket used to send unsolicited datagrams.
func udpReflectorConn(t *testing.T, w *world, addr string) net.PacketConn {
	pc, err := w.srv.Net().ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func checkDelta(t *testing.T, want Truth, local, mapped []int) {
	t.Helper()
	t.Logf("new mappings: local %v -> external %v", local, mapped)
	consecutive := true
	equal := true
	for i := range mapped {
		if mapped[i] != local[i] {
			equal = false
		}
		if i > 0 && mapped[i] != mapped[i-1]+1 {
			consecutive = false
		}
	}
	switch want.DeltaType {
	case DeltaEqual:
		if !equal {
			t.Errorf("delta: want external port == local port")
		}
	case DeltaIndependent:
		if !consecutive {
			t.Errorf("delta: want each new mapping +%d", want.DeltaValue)
		}
	case DeltaRandom:
		if equal || consecutive {
			t.Errorf("delta: want random external ports")
		}
	}
}

func checkTCP(t *testing.T, w *world, want Truth) {
	for _, a := range []string{joinHostPort(w.a1, 6000), joinHostPort(w.a1, 6001), joinHostPort(w.a2, 6000)} {
		tcpReflector(t, w.srv, a)
	}
	m1, err := tcpAsk(t, w.h, 43000, joinHostPort(w.a1, 6000))
	if err != nil {
		t.Fatal(err)
	}
	m2, err := tcpAsk(t, w.h, 43000, joinHostPort(w.a2, 6000))
	if err != nil {
		t.Fatal(err)
	}
	m3, err := tcpAsk(t, w.h, 43000, joinHostPort(w.a1, 6001))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("local :43000 -> a1:6000 %v, a2:6000 %v, a1:6001 %v", m1, m2, m3)
	if m1.Addr() != w.outside() {
		t.Errorf("mapped address %v, want %v", m1.Addr(), w.outside())
	}
	if got := mappingClass(m1, m2, m3); got != want.Mapping {
		t.Errorf("mapping: got %s, want %s", got, want.Mapping)
	}

	checkTCPFiltering(t, w, "tcp4", want)
}

// TestDelay: a 20 ms one-way delay on a server's link shows up as a TCP
// connect time of at least one 40 ms round trip.
func TestDelay(t *testing.T) {
	lab := New(t)
	slow := lab.AddServerLink("slow", Link{Delay: 20 * time.Millisecond})
	fast := lab.AddServer("fast")
	client := lab.AddServer("client")
	for _, h := range []*Host{slow, fast} {
		tcpReflector(t, h, joinHostPort(h.IP4(), 7000))
	}
	connect := func(h *Host) time.Duration {
		best := time.Hour
		for i := 0; i < 5; i++ {
			start := time.Now()
			c, err := client.Net().DialContext(context.Background(), "tcp", joinHostPort(h.IP4(), 7000))
			if err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			c.Close()
			if d < best {
				best = d
			}
		}
		return best
	}
	d := connect(slow)
	t.Logf("TCP connect over the 20 ms link: %v (best of 5); over a plain link: %v", d, connect(fast))
	if d < 40*time.Millisecond {
		t.Errorf("connect took %v: the 20 ms one-way delay was not applied (want >= 40 ms round trip)", d)
	}
}

// TestLoss: a 50% loss link drops about half of the datagrams crossing it.
func TestLoss(t *testing.T) {
	lab := New(t)
	lossy := lab.AddServerLink("lossy", Link{Loss: 50, Rate: "50mbit"})
	client := lab.AddServer("client")
	rx, err := lossy.Net().ListenPacket(context.Background(), "udp4", joinHostPort(lossy.IP4(), 7100))
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := client.Net().ListenPacket(context.Background(), "udp4", joinHostPort(client.IP4(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	const n = 200
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(lossy.IP4(), 7100))
	got := 0
	buf := make([]byte, 100)
	// Warm up ARP in both directions so neighbour discovery is not what drops.
	for i := 0; i < 20 && got == 0; i++ {
		_, _ = tx.WriteTo([]byte("warm"), dst)
		_ = rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := rx.ReadFrom(buf); err == nil {
			got = 1
		}
	}
	got = 0
	for i := 0; i < n; i++ {
		_, _ = tx.WriteTo([]byte("x"), dst)
		time.Sleep(time.Millisecond)
	}
	for {
		_ = rx.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, _, err := rx.ReadFrom(buf); err != nil {
			break
		}
		got++
	}
	t.Logf("%d of %d datagrams crossed a 50%% loss link", got, n)
	if got < n/4 || got > n*3/4 {
		t.Errorf("received %d of %d: loss not near 50%%", got, n)
	}
	out, err := inNS(lossy.Namespace(), nil, "tc", "qdisc", "show", "dev", "eth0")
	if err != nil || !hasAll(out, "tbf", "rate 50Mbit") {
		t.Errorf("rate limit not installed: %q %v", out, err)
	}
}

// TestCleanup: a lab's namespaces are gone when its test ends.
func TestCleanup(t *testing.T) {
	var names []string
	t.Run("lab", func(t *testing.T) {
		lab := New(t)
		r := lab.AddRouter("r", FullCone, Link{Delay: time.Millisecond})
		r.AddHost("h")
		lab.AddServer("s")
		names = lab.Namespaces()
	})
	if len(names) == 0 {
		t.Skip("lab did not start")
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		for _, n := range names {
			if e.Name() == n {
				t.Errorf("namespace %s left behind", n)
			}
		}
		if strings.HasPrefix(e.Name(), nsPrefix) && !processAliveFromName(e.Name()) {
			t.Errorf("leftover lab namespace %s of a dead process", e.Name())
		}
	}
}

func processAliveFromName(name string) bool {
	rest := strings.TrimPrefix(name, nsPrefix)
	pid := 0
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		pid = pid*10 + int(c-'0')
	}
	return processAlive(pid)
}

// checkTCPFiltering listens on the port of a fresh mapping that has only
// connected to a1:6000, lets outsiders connect to it, and compares the
// filtering seen with want's.
func checkTCPFiltering(t *testing.T, w *world, network string, want Truth) {
	var ln net.Listener
	if err := w.h.Do(func() error {
		lc := net.ListenConfig{Control: reuse}
		var err error
		ln, err = lc.Listen(context.Background(), network, ":43100")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	m, err := tcpAsk(t, w.h, 43100, joinHostPort(w.a1, 6000))
	if err != nil {
		t.Fatal(err)
	}
	sameAddr, err := tcpReaches(w.srv, joinHostPort(w.a1, 6101), m)
	if err != nil {
		t.Fatal(err)
	}
	otherAddr, err := tcpReaches(w.srv, joinHostPort(w.a2, 6102), m)
	if err != nil {
		t.Fatal(err)
	}
	if got := filteringClass(sameAddr, otherAddr); got != want.Filtering {
		t.Errorf("filtering: got %s (from a1 other port: %v, from a2: %v), want %s", got, sameAddr, otherAddr, want.Filtering)
	}
}

// udpProbe starts the reflectors and asks a1:5000, a2:5000 and a1:5001 how
// they see one socket bound by addr(41000). ok is false (and the check
// done) when want blocks UDP. listen binds more sockets the same way.
func udpProbe(t *testing.T, w *world, network string, addr func(port int) string, want Truth) (listen func(port int) net.PacketConn, m1, m2, m3 netip.AddrPort, ok bool) {
	for _, a := range []string{joinHostPort(w.a1, 5000), joinHostPort(w.a1, 5001), joinHostPort(w.a2, 5000)} {
		udpReflector(t, w.srv, a)
	}
	listen = func(port int) net.PacketConn {
		pc, err := w.h.Net().ListenPacket(context.Background(), network, addr(port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	pc := listen(41000)
	m1, err := udpAsk(pc, joinHostPort(w.a1, 5000))
	if want.NATType == NATBlocked {
		if err == nil {
			t.Fatalf("UDP got through a UDP-blocking router (seen as %v)", m1)
		}
		return listen, m1, m2, m3, false
	}
	if err != nil {
		t.Fatal(err)
	}
	if m2, err = udpAsk(pc, joinHostPort(w.a2, 5000)); err != nil {
		t.Fatal(err)
	}
	if m3, err = udpAsk(pc, joinHostPort(w.a1, 5001)); err != nil {
		t.Fatal(err)
	}
	return listen, m1, m2, m3, true
}

// checkUDPFiltering compares the filtering of a fresh socket that has only
// talked to a1:5000 with want's, and returns the outsider socket (a2:5002).
func checkUDPFiltering(t *testing.T, w *world, listen func(int) net.PacketConn, want Truth) net.PacketConn {
	pc2 := listen(41100)
	m, err := udpAsk(pc2, joinHostPort(w.a1, 5000))
	if err != nil {
		t.Fatal(err)
	}
	srcSame := udpReflectorConn(t, w, joinHostPort(w.a1, 5002))
	srcOther := udpReflectorConn(t, w, joinHostPort(w.a2, 5002))
	sameAddr := udpReaches(srcSame, m, pc2)
	otherAddr := udpReaches(srcOther, m, pc2)
	if got := filteringClass(sameAddr, otherAddr); got != want.Filtering {
		t.Errorf("filtering: got %s (from a1 other port: %v, from a2: %v), want %s", got, sameAddr, otherAddr, want.Filtering)
	}
	return srcOther
}

// TestLeftoverProcesses: a namespace left by a lab whose test binary died
// is removed with the processes still running in it.
func TestLeftoverProcesses(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "sleep")
	// The pid of a process that has exited stands for the dead test binary.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%s%d-leftover-test", nsPrefix, dead.Process.Pid)
	if processAlive(dead.Process.Pid) {
		t.Skip("the exited process's pid is in use again")
	}
	if err := run("ip", "netns", "add", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run("ip", "netns", "del", name) })
	orphan := exec.Command("ip", "netns", "exec", name, "sleep", "600")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- orphan.Wait() }()
	t.Cleanup(func() { _ = orphan.Process.Kill() })
	// ip netns exec has become sleep once the namespace lists it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if pids, _ := output(nil, "ip", "netns", "pids", name); strings.TrimSpace(pids) != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the process never showed up in the namespace")
		}
	}

	removeLeftovers(t)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the process in the leftover namespace still runs")
	}
	if _, err := os.Stat("/run/netns/" + name); !os.IsNotExist(err) {
		t.Errorf("leftover namespace %s not removed (%v)", name, err)
	}
}
