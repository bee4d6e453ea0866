package punch

import (
	"testing"

	"github.com/p2pd-go/p2pd/pkg/nat"
)

func TestPlan(t *testing.T) {
	var (
		open     = Profile{Type: nat.OpenInternet, Delta: nat.Delta{Type: nat.DeltaEqual}}
		full     = Profile{Type: nat.FullCone, Delta: nat.Delta{Type: nat.DeltaEqual}}
		restrict = Profile{Type: nat.RestrictNAT, Delta: nat.Delta{Type: nat.DeltaEqual}}
		port     = Profile{Type: nat.RestrictPortNAT, Delta: nat.Delta{Type: nat.DeltaEqual}}
		symRand  = Profile{Type: nat.SymmetricNAT, Delta: nat.Delta{Type: nat.DeltaRandom}}
		symSeq   = Profile{Type: nat.SymmetricNAT, Delta: nat.Delta{Type: nat.DeltaIndependent, Value: 1}}
		symDep   = Profile{Type: nat.SymmetricNAT, Delta: nat.Delta{Type: nat.DeltaDependent, Value: 2}}
		symPres  = Profile{Type: nat.SymmetricNAT, Delta: nat.Delta{Type: nat.DeltaPreserving}}
		blocked  = Profile{Type: nat.BlockedNAT}
		unknown  = Profile{}
	)
	tests := []struct {
		name       string
		mine, peer Profile
		ok         bool
	}{
		{"port-restricted both", port, port, true},
		{"restricted to port-restricted", restrict, port, true},
		{"symmetric sequential to port-restricted", symSeq, port, true},
		{"port-restricted to symmetric sequential", port, symSeq, true},
		{"symmetric sequential both", symSeq, symSeq, true},
		{"symmetric dependent to port-restricted", symDep, port, true},
		{"symmetric preserving to symmetric random", symPres, symRand, false},
		{"udp-blocked to port-restricted", blocked, port, true},
		{"unmeasured to port-restricted", unknown, port, true},
		{"symmetric random to port-restricted", symRand, port, false},
		{"port-restricted to symmetric random", port, symRand, false},
		{"symmetric random to symmetric sequential", symRand, symSeq, false},
		{"symmetric random both", symRand, symRand, false},
		{"symmetric random to udp-blocked", symRand, blocked, false},
		{"symmetric random to restricted", symRand, restrict, true},
		{"restricted to symmetric random", restrict, symRand, true},
		{"symmetric random to full cone", symRand, full, true},
		{"open to symmetric random", open, symRand, true},
		{"open both", open, open, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Plan(tt.mine, tt.peer)
			if d.OK != tt.ok {
				t.Fatalf("Plan(%v, %v) = %+v, want ok=%v", tt.mine, tt.peer, d, tt.ok)
			}
			if d.Reason == "" {
				t.Fatal("no reason given")
			}
			// The rule is symmetric: both peers must come to the same answer.
			if r := Plan(tt.peer, tt.mine); r.OK != d.OK {
				t.Fatalf("Plan is not symmetric: %+v one way, %+v the other", d, r)
			}
		})
	}
}

func TestPlanIPv6(t *testing.T) {
	var (
		open     = Profile{Type: nat.OpenInternet, Delta: nat.Delta{Type: nat.DeltaNA}}
		restrict = Profile{Type: nat.RestrictNAT, Delta: nat.Delta{Type: nat.DeltaEqual}}
		port     = Profile{Type: nat.RestrictPortNAT, Delta: nat.Delta{Type: nat.DeltaEqual}}
		blocked  = Profile{Type: nat.BlockedNAT}
	)
	for _, tt := range []struct {
		name       string
		mine, peer Profile
		ok         bool
	}{
		{"port-restricted both", port, port, true},
		{"restricted to port-restricted", restrict, port, true},
		{"open to port-restricted", open, port, true},
		{"udp-blocked to port-restricted", blocked, port, true},
		{"open both: direct connect", open, open, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := PlanIPv6(tt.mine, tt.peer)
			if d.OK != tt.ok || d.Reason == "" {
				t.Fatalf("PlanIPv6(%v, %v) = %+v, want ok=%v and a reason", tt.mine, tt.peer, d, tt.ok)
			}
			if r := PlanIPv6(tt.peer, tt.mine); r.OK != d.OK {
				t.Fatalf("PlanIPv6 is not symmetric: %+v one way, %+v the other", d, r)
			}
		})
	}
}
