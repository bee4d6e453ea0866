package nat

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestPredictP2PDCases follows the rows of P2PD's prediction table
// (p2pd-behaviour.md 2.4) with the ports of its delta test vectors (2.3).
func TestPredictP2PDCases(t *testing.T) {
	pr := func(ty Type, dt DeltaType, v int) Predictor { return Predictor{Type: ty, Delta: Delta{dt, v}} }
	for _, tc := range []struct {
		name  string
		p     Predictor
		last  Mapping
		local int
		n     int
		want  []int
		err   error
	}{
		{"open: the local port", pr(OpenInternet, DeltaNA, 0), Mapping{5000, 5000}, 6000, 4, []int{6000}, nil},
		{"open with a random delta is still open", pr(OpenInternet, DeltaRandom, 0), Mapping{5000, 5000}, 6000, 4, []int{6000}, nil},
		{"equal: the local port", pr(RestrictPortNAT, DeltaEqual, 0), Mapping{4567, 4567}, 48234, 4, []int{48234}, nil},
		{"equal on a symmetric NAT", pr(SymmetricNAT, DeltaEqual, 0), Mapping{60000, 60000}, 60001, 4, []int{60001}, nil},
		{"preserving: moves with the local port", pr(RestrictPortNAT, DeltaPreserving, 0), Mapping{10000, 56000}, 10200, 4, []int{56200}, nil},
		{"preserving downward", pr(SymmetricNAT, DeltaPreserving, 0), Mapping{12000, 58000}, 11000, 1, []int{57000}, nil},
		{"independent 10: next steps", pr(SymmetricNAT, DeltaIndependent, 10), Mapping{23456, 50050}, 23456, 3, []int{50060, 50070, 50080}, nil},
		{"independent 10 from another local port", pr(SymmetricNAT, DeltaIndependent, 10), Mapping{23456, 50050}, 31000, 2, []int{50060, 50070}, nil},
		{"independent on a cone NAT, new local port", pr(RestrictPortNAT, DeltaIndependent, 10), Mapping{23456, 50050}, 31000, 1, []int{50060}, nil},
		{"dependent 20: next local port", pr(SymmetricNAT, DeltaDependent, 20), Mapping{4565, 50100}, 4566, 3, []int{50120}, nil},
		{"dependent 20: three local ports on", pr(RestrictNAT, DeltaDependent, 20), Mapping{4565, 50100}, 4568, 1, []int{50160}, nil},
		{"dependent on a symmetric NAT, same local port", pr(SymmetricNAT, DeltaDependent, 20), Mapping{4565, 50100}, 4565, 2, []int{50120, 50140}, nil},
		{"random cone: the STUN mapping is reused", pr(RestrictPortNAT, DeltaRandom, 0), Mapping{40000, 61234}, 40000, 4, []int{61234}, nil},
		{"cone reuses whatever the delta", pr(FullCone, DeltaIndependent, 10), Mapping{40000, 61234}, 40000, 4, []int{61234}, nil},
		{"random cone, other local port", pr(RestrictPortNAT, DeltaRandom, 0), Mapping{40000, 61234}, 40001, 4, nil, ErrUnpredictable},
		{"symmetric random: can't predict", pr(SymmetricNAT, DeltaRandom, 0), Mapping{40000, 61234}, 40000, 4, nil, ErrUnpredictable},
		{"symmetric with unknown delta", pr(SymmetricNAT, DeltaUnknown, 0), Mapping{40000, 61234}, 40000, 4, nil, ErrUnpredictable},
		{"blocked", pr(BlockedNAT, DeltaUnknown, 0), Mapping{40000, 61234}, 40000, 4, nil, ErrUnpredictable},
		{"unknown type", pr(TypeUnknown, DeltaEqual, 0), Mapping{40000, 40000}, 40000, 4, nil, ErrUnpredictable},
		{"wraps into use_range", Predictor{SymmetricNAT, Delta{DeltaIndependent, 10}, PortRange{2000, 65535}}, Mapping{1, 65530}, 1, 2, []int{2004, 2014}, nil},
		{"stops at a repeat", Predictor{SymmetricNAT, Delta{DeltaIndependent, 1}, PortRange{5000, 5002}}, Mapping{7000, 5001}, 7000, 5, []int{5002, 5000, 5001}, nil},
		{"negative delta steps down", pr(SymmetricNAT, DeltaIndependent, -2), Mapping{7000, 50000}, 7000, 2, []int{49998, 49996}, nil},
		{"a step of 0 is reuse", pr(SymmetricNAT, DeltaIndependent, 0), Mapping{7000, 50000}, 7000, 5, []int{50000}, nil},
		{"preserving wraps below the range", pr(SymmetricNAT, DeltaPreserving, 0), Mapping{3000, 1100}, 2000, 1, []int{65535 - 923}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.Predict(tc.last, tc.local, tc.n)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || got != nil {
					t.Fatalf("got %v, %v; want %v", got, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestPredictBadInput(t *testing.T) {
	p := Predictor{Type: SymmetricNAT, Delta: Delta{DeltaIndependent, 1}}
	for _, tc := range []struct {
		name        string
		p           Predictor
		last        Mapping
		local, n    int
		errContains string
	}{
		{"no predictions", p, Mapping{5000, 5000}, 5000, 0, "0 predictions"},
		{"too many", p, Mapping{5000, 5000}, 5000, MaxPredictions + 1, "101 predictions"},
		{"local port 0", p, Mapping{5000, 5000}, 0, 1, "local port 0"},
		{"last external 70000", p, Mapping{5000, 70000}, 5000, 1, "last external port 70000"},
		{"last local negative", p, Mapping{-1, 5000}, 5000, 1, "last local port -1"},
		{"range reversed", Predictor{SymmetricNAT, Delta{DeltaIndependent, 1}, PortRange{6000, 5000}}, Mapping{5000, 5000}, 5000, 1, "port range 6000-5000"},
		{"range past 65535", Predictor{SymmetricNAT, Delta{DeltaIndependent, 1}, PortRange{1, 70000}}, Mapping{5000, 5000}, 5000, 1, "port range 1-70000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.Predict(tc.last, tc.local, tc.n)
			if err == nil || got != nil || !strings.Contains(err.Error(), tc.errContains) || !strings.HasPrefix(err.Error(), "nat: ") {
				t.Fatalf("got %v, %v; want an error containing %q", got, err, tc.errContains)
			}
		})
	}
}

// TestPortRangeIntersect uses P2PD's nats_intersect vectors.
func TestPortRangeIntersect(t *testing.T) {
	for _, tc := range []struct {
		a, b, want PortRange
		ok         bool
	}{
		{PortRange{2000, 10000}, PortRange{5000, 20000}, PortRange{5000, 10000}, true},
		{PortRange{2000, 10000}, PortRange{2000, 10000}, PortRange{2000, 10000}, true},
		{PortRange{2000, 10000}, PortRange{9999, 10000}, PortRange{9999, 10000}, true},
		{PortRange{2000, 3000}, PortRange{4000, 5000}, PortRange{4000, 3000}, false},
	} {
		got, ok := tc.a.Intersect(tc.b)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%v ∩ %v = %v %v, want %v %v", tc.a, tc.b, got, ok, tc.want, tc.ok)
		}
	}
}

// TestLocalFor covers P2PD's reply-port rule: only NATs whose external port
// follows the local port can be steered to a chosen external port.
func TestLocalFor(t *testing.T) {
	pr := func(ty Type, dt DeltaType) Predictor { return Predictor{Type: ty, Delta: Delta{dt, 0}} }
	for _, tc := range []struct {
		name string
		p    Predictor
		last Mapping
		want int
		out  int
		err  error
	}{
		{"open", pr(OpenInternet, DeltaNA), Mapping{5000, 5000}, 7000, 7000, nil},
		{"equal", pr(RestrictPortNAT, DeltaEqual), Mapping{5000, 5000}, 7000, 7000, nil},
		{"preserving", pr(RestrictPortNAT, DeltaPreserving), Mapping{10000, 56000}, 56200, 10200, nil},
		{"preserving below 1024", pr(RestrictPortNAT, DeltaPreserving), Mapping{2000, 56000}, 50000, 0, ErrUnpredictable},
		{"independent", pr(SymmetricNAT, DeltaIndependent), Mapping{5000, 5000}, 7000, 0, ErrUnpredictable},
		{"random", pr(RestrictPortNAT, DeltaRandom), Mapping{5000, 5000}, 7000, 0, ErrUnpredictable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.LocalFor(tc.last, tc.want)
			if got != tc.out || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("got %d, %v; want %d, %v", got, err, tc.out, tc.err)
			}
			if err != nil {
				return
			}
			// Round trip: predicting from the chosen port gives the wanted one.
			ports, err := tc.p.Predict(tc.last, got, 1)
			if err != nil || ports[0] != tc.want {
				t.Errorf("Predict from local %d = %v, %v; want %d", got, ports, err, tc.want)
			}
		})
	}
}

func TestPredictable(t *testing.T) {
	for _, tc := range []struct {
		ty   Type
		dt   DeltaType
		want bool
	}{
		{OpenInternet, DeltaNA, true},
		{FullCone, DeltaRandom, true},
		{RestrictNAT, DeltaRandom, true},
		{RestrictPortNAT, DeltaEqual, true},
		{SymmetricNAT, DeltaEqual, true},
		{SymmetricNAT, DeltaPreserving, true},
		{SymmetricNAT, DeltaIndependent, true},
		{SymmetricNAT, DeltaDependent, true},
		{SymmetricNAT, DeltaRandom, false},
		{SymmetricNAT, DeltaUnknown, false},
		{BlockedNAT, DeltaUnknown, false},
	} {
		p := Predictor{Type: tc.ty, Delta: Delta{tc.dt, 1}}
		if got := p.Predictable(); got != tc.want {
			t.Errorf("%s / %s: predictable %v, want %v", tc.ty, tc.dt, got, tc.want)
		}
	}
}

// FuzzPredict checks Predict's contract on any input: an error that says
// what is wrong, or 1..n distinct ports in 1-65535.
func FuzzPredict(f *testing.F) {
	f.Add(6, 4, 10, 23456, 50050, 23456, 3, 0, 0)
	f.Add(5, 3, 0, 10000, 56000, 10200, 1, 2000, 65535)
	f.Add(6, 5, -20, 4565, 50100, 4566, 100, 5000, 5002)
	f.Fuzz(func(t *testing.T, ty, dt, v, lastLocal, lastExt, local, n, lo, hi int) {
		p := Predictor{Type: Type(ty), Delta: Delta{DeltaType(dt), v}, Range: PortRange{lo, hi}}
		got, err := p.Predict(Mapping{lastLocal, lastExt}, local, n)
		if err != nil {
			if got != nil || !strings.HasPrefix(err.Error(), "nat: ") {
				t.Fatalf("error %v with ports %v", err, got)
			}
			return
		}
		if len(got) < 1 || len(got) > n {
			t.Fatalf("%d ports for n=%d", len(got), n)
		}
		seen := map[int]bool{}
		for _, port := range got {
			if port < 1 || port > 65535 || seen[port] {
				t.Fatalf("bad or repeated port %d in %v", port, got)
			}
			seen[port] = true
		}
		if l, err := p.LocalFor(Mapping{lastLocal, lastExt}, got[0]); err == nil && (l < 1 || l > 65535) {
			t.Fatalf("LocalFor gave port %d", l)
		}
	})
}
