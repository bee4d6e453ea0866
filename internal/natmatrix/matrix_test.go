package natmatrix

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/node"
	"github.com/p2pd-go/p2pd/pkg/pipe"
)

// siteDelay is each site's one-way WAN delay: 40 ms RTT between sites.
const siteDelay = 10 * time.Millisecond

// quickPairs run in `make test`: one of each kind of winner.
var quickPairs = [][2]natlab.Behaviour{
	{natlab.PortRestrictedCone, natlab.FullCone},
	{natlab.Open, natlab.Symmetric},
	{natlab.PortRestrictedCone, natlab.PortRestrictedCone},
	{natlab.Symmetric, natlab.Symmetric},
	{natlab.UDPBlocked, natlab.SymmetricSequential},
}

// TestNATMatrix connects agents across NAT pairs. With P2PD_NATMATRIX=full
// (what `make natmatrix` sets) it runs all 49 ordered pairs,
// P2PD_NATMATRIX_ATTEMPTS times each (default 5), and writes
// docs/nat-matrix.md and docs/nat-matrix.svg; otherwise a few pairs once.
func TestNATMatrix(t *testing.T) {
	full := os.Getenv("P2PD_NATMATRIX") == "full"
	attempts := 1
	var pairs [][2]natlab.Behaviour
	if full {
		attempts = 5
		if v := os.Getenv("P2PD_NATMATRIX_ATTEMPTS"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				t.Fatalf("P2PD_NATMATRIX_ATTEMPTS=%q: want a positive number", v)
			}
			attempts = n
		}
		for _, a := range natlab.Behaviours() {
			for _, b := range natlab.Behaviours() {
				pairs = append(pairs, [2]natlab.Behaviour{a, b})
			}
		}
	} else {
		pairs = quickPairs
	}
	start := time.Now()
	var results []Pair
	for _, pr := range pairs {
		t.Run(fmt.Sprintf("%s_to_%s", pr[0], pr[1]), func(t *testing.T) {
			p := runPair(t, pr[0], pr[1], attempts)
			results = append(results, p)
			for i, a := range p.Attempts {
				t.Logf("attempt %d: winner %q in %v %s", i+1, a.Winner, a.Time.Round(time.Millisecond), a.Err)
			}
			if p.Successes() != len(p.Attempts) {
				t.Errorf("%d of %d attempts connected", p.Successes(), len(p.Attempts))
			}
			// Where the plan leaves only the relay, nothing else can win.
			if p.Expected == node.KindRelay {
				for i, a := range p.Attempts {
					if a.Err == "" && a.Winner != node.KindRelay {
						t.Errorf("attempt %d won by %q where only the relay can work", i+1, a.Winner)
					}
				}
			}
		})
	}
	if !full {
		return
	}
	run := Run{RTT: 4 * siteDelay, Attempts: attempts, Started: start, Took: time.Since(start), Command: "make natmatrix"}
	docs := filepath.Join("..", "..", "docs")
	var md, svg bytes.Buffer
	if err := WriteMarkdown(&md, run, results, "nat-matrix.svg"); err != nil {
		t.Fatal(err)
	}
	if err := WriteSVG(&svg, results); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"nat-matrix.md": md.Bytes(), "nat-matrix.svg": svg.Bytes()} {
		if err := os.WriteFile(filepath.Join(docs, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote docs/nat-matrix.md and docs/nat-matrix.svg")
}

// runPair builds one lab for the pair and connects fresh agents attempts
// times: an agent behind from opens a pipe to one behind to and checks it
// with an ECHO.
func runPair(t *testing.T, from, to natlab.Behaviour, attempts int) Pair {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD, agenttest.MQTTD)
	s.StartTURN(t)
	link := natlab.Link{Delay: siteDelay}
	ha := lab.AddRouter("site-a", from, link).AddHost("a")
	hb := lab.AddRouter("site-b", to, link).AddHost("b")
	p := Pair{From: from, To: to, Expected: Expected(from, to)}
	for range attempts {
		a := agenttest.StartAgent(t, ha, s)
		b := agenttest.StartAgent(t, hb, s)
		p.Attempts = append(p.Attempts, attempt(t, a, b))
		a.Close()
		b.Close()
	}
	return p
}

func attempt(t *testing.T, a, b *agenttest.Agent) Attempt {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	begin := time.Now()
	pp, rep, err := a.Connect(ctx, b.Addr(t))
	took := time.Since(begin)
	if err != nil {
		return Attempt{Err: err.Error(), Time: took}
	}
	defer pp.Close()
	// The pipe must carry data, not just exist.
	sub := pipe.Sub{Msg: "^matrix"}
	if err := pp.Subscribe(sub); err != nil {
		return Attempt{Err: err.Error()}
	}
	if err := pp.Send(ctx, []byte("ECHO matrix")); err != nil {
		return Attempt{Winner: rep.Winner, Err: "echo send: " + err.Error()}
	}
	if m, err := pp.Recv(ctx, sub, 10*time.Second); err != nil || string(m.Data) != "matrix" {
		return Attempt{Winner: rep.Winner, Err: fmt.Sprintf("echo: %q %v", m.Data, err)}
	}
	return Attempt{Winner: rep.Winner, Time: took}
}
