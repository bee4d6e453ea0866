// Package testload puts light, bounded load on a server under test: it
// stops when the test closes stop, and sends only to the address given
// (loopback in the tests).
package testload

import (
	"net"
	"sync"
	"time"
)

// held is how many connections TCP keeps open at once.
const held = 20

// TCP dials addr again and again until stop closes, writes first(i) on the
// i-th connection and keeps the last connections open, so some are always
// being accepted and some are idle when the server stops.
func TCP(addr string, first func(i int) []byte, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			_, _ = c.Write(first(i))
			if open = append(open, c); len(open) > held {
				open[0].Close()
				open = open[1:]
			}
		}
	}()
}

// UDP sends msgs to addr about once a millisecond until stop closes.
func UDP(addr string, msgs [][]byte, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := net.Dial("udp", addr)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, m := range msgs {
				_, _ = c.Write(m)
			}
			time.Sleep(time.Millisecond)
		}
	}()
}
