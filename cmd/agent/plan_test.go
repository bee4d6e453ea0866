package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/p2pd-go/p2pd/pkg/agent/agenttest"
	"github.com/p2pd-go/p2pd/pkg/api"
	"github.com/p2pd-go/p2pd/pkg/natlab"
	"github.com/p2pd-go/p2pd/pkg/node"
)

// TestPlanCommand runs `agent plan` against a real agent's API in the NAT
// lab: two peers behind port-restricted NATs, so direct and reverse are
// skipped with their reasons and the punch runs; from behind a symmetric
// NAT with random ports the punch is skipped too. Nothing is sent.
func TestPlanCommand(t *testing.T) {
	for _, tt := range []struct {
		from  natlab.Behaviour
		punch bool
	}{{natlab.PortRestrictedCone, true}, {natlab.Symmetric, false}} {
		t.Run(tt.from.String(), func(t *testing.T) { planCommand(t, tt.from, tt.punch) })
	}
}

func planCommand(t *testing.T, from natlab.Behaviour, punch bool) {
	lab := natlab.New(t)
	s := agenttest.NewStack(t, lab, agenttest.MQTTD)
	a := agenttest.StartAgent(t, lab.AddRouter("ra", from).AddHost("a"), s)
	b := agenttest.StartAgent(t, lab.AddRouter("rb", natlab.PortRestrictedCone).AddHost("b"), s)
	srv, err := api.New(api.Config{Backend: a.Agent, Listen: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	url := "http://" + srv.Addrs()[0].String()

	var out, errb bytes.Buffer
	if err := client(context.Background(), []string{"plan", "--api-url", url, b.Addr(t)}, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatalf("agent plan: %v (%s)", err, errb.String())
	}
	t.Logf("agent plan:\n%s", out.String())
	var r struct {
		Plan []struct {
			node.Step
			Start string `json:"start"`
		} `json:"plan"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{node.Direct: false, node.Reverse: false, node.KindPunch: punch}
	if len(r.Plan) != len(want) {
		t.Fatalf("plan has %d steps, want %d: %s", len(r.Plan), len(want), out.String())
	}
	for _, st := range r.Plan {
		if run, ok := want[st.Strategy]; !ok || st.Run != run || st.Why == "" {
			t.Errorf("step %+v: want run=%v with a reason", st, run)
		}
	}
	if last := r.Plan[len(r.Plan)-1]; punch && (last.Start != "0s" || last.Deadline <= 0) {
		t.Errorf("punch is the first to run: starts %s, deadline %s", last.Start, last.Deadline)
	}

	out.Reset()
	err = client(context.Background(), []string{"plan", "--api-url", url, "not-an-address"}, strings.NewReader(""), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "API error 9") {
		t.Errorf("plan of a bad address: %v %s", err, out.String())
	}
}
