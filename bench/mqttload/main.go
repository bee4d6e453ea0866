// Command mqttload is the MQTT load generator of `make bench`: paho clients
// publish to and subscribe to signalling-shaped topics (p2pd/<node id>) on
// any broker and report throughput and latency; an idle mode holds many
// connections and reports the broker's memory.
//
//	mqttload run  -broker tcp://127.0.0.1:1883 -pubs 10 -subs 10 -qos 1 -seconds 5
//	mqttload run  -broker ... -pubs 1 -subs 100 -fanout
//	mqttload run  -broker ... -qos 1 -rate 2000   (paced: deliveries/s, the publishers' sends spread evenly)
//	mqttload run  -broker ... -qos 1 -rate 2000 -burst   (paced: all publishers send at the same instants)
//	mqttload run  -broker ... -pubs 10 -subs 10 -qos 1 -inflight 100 -seconds 10 -complete
//	              (open loop: 100 publishes in flight per publisher; fails if any message is missing)
//	mqttload idle -addr 127.0.0.1:1883 -n 10000 -pid <broker pid>
//	mqttload idleprof -n 10000 -dir /tmp   (in-process broker: heap and stack per connection, pprof files)
//	mqttload port                     (prints a free loopback TCP port)
package main

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: mqttload run|idle|idleprof|port [flags] (see -h of each)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "idle":
		err = idleCmd(os.Args[2:])
	case "idleprof":
		err = idleProfCmd(os.Args[2:])
	case "port":
		err = portCmd()
	default:
		err = fmt.Errorf("unknown mode %q (run, idle, idleprof, port)", os.Args[1])
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "mqttload:", err)
		os.Exit(1)
	}
}

func portCmd() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	return nil
}

// nodeTopic returns a fresh p2pd/<node id> topic.
func nodeTopic() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return "p2pd/" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(k))
}
