package api

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/p2pd-go/p2pd/pkg/agent"
	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/pipe"
)

// benchChunk is what a client writes per iteration.
const benchChunk = 64 << 10

// BenchmarkPipeThroughput compares bytes per second through /p2p/pipe
// between two agents (API relay on loopback -> Noise pipe -> API relay on
// loopback, both agents on one lab LAN) with raw TCP on host loopback, raw
// TCP between the same two lab hosts, and the encrypted pipe used as a
// library (no API relays).
func BenchmarkPipeThroughput(b *testing.B) {
	b.Run("raw-loopback-tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		benchStream(b, func() (io.Writer, io.Reader, func()) {
			dst := acceptOne(b, ln)
			src, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			r := <-dst
			return src, r, func() { src.Close(); r.Close() }
		})
	})
	lab := natlab.New(b)
	st := agenttest.NewStack(b, lab, agenttest.MQTTD)
	lan := lab.AddRouter("lan", natlab.Open)
	ha, hb := lan.AddHost("a"), lan.AddHost("b")
	b.Run("raw-lab-tcp", func(b *testing.B) {
		ln, err := hb.Net().Listen(context.Background(), "tcp", hb.IP4().String()+":0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		benchStream(b, func() (io.Writer, io.Reader, func()) {
			dst := acceptOne(b, ln)
			src, err := ha.Net().DialContext(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			r := <-dst
			return src, r, func() { src.Close(); r.Close() }
		})
	})
	a := agenttest.StartAgent(b, ha, st)
	bb := agenttest.StartAgent(b, hb, st)
	_, aAPI := apiFor(b, a)
	bs, bAPI := apiFor(b, bb)
	b.Run("p2p-pipe-library", func(b *testing.B) { // agent.Pipe to agent.Pipe, no API relays
		benchStream(b, func() (io.Writer, io.Reader, func()) {
			p, _, err := a.Connect(context.Background(), bb.Addr(b))
			if err != nil {
				b.Fatal(err)
			}
			var in *con
			for in == nil {
				for _, c := range bs.cons.all() {
					if c.inbound && c.pipe.PipeID != "" && c.pipe.Peer == a.ID() && bs.cons.claim(c) {
						in = c
					}
				}
			}
			pr, pw := io.Pipe()
			if _, err := in.pipe.Divert(agent.AllMessages, func(m pipe.Message) { _, _ = pw.Write(m.Data) }); err != nil {
				b.Fatal(err)
			}
			return pipeWriter{p}, pr, func() { p.Close(); pw.Close() }
		})
	})
	b.Run("p2p-pipe", func(b *testing.B) { benchAPIPipe(b, a, bb, aAPI, bAPI) })
	// Both agents on one host (different node ports): the pipe between them
	// crosses that host's loopback, as between two agents on one machine.
	l1 := agenttest.StartAgentWith(b, ha, st, func(c *agent.Config) { c.Port = 10011 })
	l2 := agenttest.StartAgentWith(b, ha, st, func(c *agent.Config) { c.Port = 10012 })
	_, l1API := apiFor(b, l1)
	_, l2API := apiFor(b, l2)
	b.Run("p2p-pipe-one-host", func(b *testing.B) { benchAPIPipe(b, l1, l2, l1API, l2API) })
}

// benchAPIPipe streams through /p2p/pipe: client -> a's API -> pipe -> bb's
// API (an accepted connection) -> client.
func benchAPIPipe(b *testing.B, a, bb *agenttest.Agent, aAPI, bAPI string) {
	benchStream(b, func() (io.Writer, io.Reader, func()) {
		acc := rawRequest(b, bAPI, "/p2p/accept/timeout/30")
		if m := must(do(b, aAPI, call{path: "/p2p/open/bench/" + escape(bb.Addr(b))})); m["error"] != 0.0 {
			b.Fatalf("open: %v", m)
		}
		br := bufio.NewReader(acc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.Header.Get("X-P2pd-Name") == "" {
			b.Fatalf("accept: %v", err)
		}
		src := rawRequest(b, aAPI, "/p2p/pipe/bench")
		return src, resp.Body, func() {
			src.Close()
			acc.Close()
			do(b, aAPI, call{path: "/p2p/close/bench"})
		}
	})
}

// pipeWriter sends each Write as one message.
type pipeWriter struct{ p *agent.Pipe }

func (w pipeWriter) Write(b []byte) (int, error) {
	if err := w.p.Send(context.Background(), b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func escape(s string) string {
	return strings.NewReplacer("[", "%5B", "]", "%5D", "|", "%7C").Replace(s)
}

// rawRequest opens a connection to the API and sends a GET.
func rawRequest(b *testing.B, base, path string) net.Conn {
	host := strings.TrimPrefix(base, "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		b.Fatal(err)
	}
	return c
}

func acceptOne(b *testing.B, ln net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			b.Error(err)
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

// benchStream writes b.N chunks into the writer and reads them all from
// the reader; setup makes a fresh stream per run. Besides MB/s it reports
// the process's CPU time per byte moved (cpu-ns/B).
func benchStream(b *testing.B, setup func() (io.Writer, io.Reader, func())) {
	w, r, done := setup()
	defer done()
	b.SetBytes(benchChunk)
	buf := make([]byte, benchChunk)
	read := make(chan error, 1)
	cpu0 := processCPU()
	b.ResetTimer()
	go func() {
		_, err := io.CopyN(io.Discard, r, int64(b.N)*benchChunk)
		read <- err
	}()
	for i := 0; i < b.N; i++ {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-read; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	// CPU per byte does not depend on how busy the machine is, as MB/s
	// does: it says what each path costs.
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(int64(b.N)*benchChunk), "cpu-ns/B")
	}
}
