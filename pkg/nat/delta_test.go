package nat

import (
	"math/rand/v2"
	"testing"
)

// noise returns n samples with random local and mapped ports from a fixed
// seed, so the vectors below are deterministic.
func noise(seed uint64, n int) []Sample {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]Sample, n)
	for i := range out {
		out[i] = Sample{Local: 4000 + r.IntN(60000), Mapped: 4000 + r.IntN(60000), OK: true}
	}
	return out
}

func pairs(p ...int) []Sample {
	out := make([]Sample, 0, len(p)/2)
	for i := 0; i < len(p); i += 2 {
		out = append(out, Sample{Local: p[i], Mapped: p[i+1], OK: true})
	}
	return out
}

// TestClassifyDeltaP2PDVectors uses the vectors of P2PD's tests/test_nat.py
// (p2pd-behaviour.md 2.3): six telling pairs, then noise, threshold 5.
func TestClassifyDeltaP2PDVectors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		round1 []Sample
		round2 []Sample
		want   Delta
	}{
		{"preserving", append(pairs(4000, 50000, 10000, 56000, 10200, 56200, 10400, 56400, 11000, 57000, 12000, 58000), noise(1, 6)...), noise(2, 12), Delta{DeltaPreserving, 0}},
		{"equal", append(pairs(4567, 4567, 48234, 48234, 6823, 6823, 60000, 60000, 50000, 50000, 60001, 60001), noise(3, 6)...), noise(4, 12), Delta{DeltaEqual, 0}},
		{"independent 10", append(pairs(31000, 50000, 8123, 50010, 40555, 50020, 12000, 50030, 61000, 50040, 23456, 50050), noise(5, 6)...), noise(6, 12), Delta{DeltaIndependent, 10}},
		{"dependent 20", noise(7, 12), append(pairs(4560, 50000, 4561, 50020, 4562, 50040, 4563, 50060, 4564, 50080, 4565, 50100), noise(8, 6)...), Delta{DeltaDependent, 20}},
		{"random", noise(9, 12), noise(10, 12), Delta{DeltaRandom, 0}},
		{"nothing answered", make([]Sample, 12), make([]Sample, 12), Delta{DeltaUnknown, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClassifyDelta(tc.round1, tc.round2, DeltaThreshold(12)); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestClassifyDeltaRules(t *testing.T) {
	t.Run("one preserving distance is not preserving", func(t *testing.T) {
		// Distances all 100: P2PD demands two distinct preserving distances.
		r1 := pairs(5000, 9000, 5100, 9100, 5200, 9200, 5300, 9300, 5400, 9400, 5500, 9500)
		got := ClassifyDelta(r1, noise(11, 12), 5)
		if got.Type == DeltaPreserving {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("missing answers break pairs", func(t *testing.T) {
		r1 := pairs(31000, 50000, 8123, 50010, 40555, 50020, 12000, 50030, 61000, 50040, 23456, 50050)
		r1[2].OK = false
		if got := ClassifyDelta(r1, nil, 5); got.Type == DeltaIndependent {
			t.Errorf("got %+v with only 3 pairs", got)
		}
	})
	t.Run("wrap-around distance", func(t *testing.T) {
		if d := portDist(65534, 1); d != 2 {
			t.Errorf("portDist(65534, 1) = %d, want 2", d)
		}
		if d := portDist(100, 90); d != 10 {
			t.Errorf("portDist(100, 90) = %d", d)
		}
	})
	t.Run("sequential symmetric NAT", func(t *testing.T) {
		r1 := noise(12, 12)
		for i := range r1 {
			r1[i].Mapped = 20010 + i
		}
		if got := ClassifyDelta(r1, nil, DeltaThreshold(12)); got != (Delta{DeltaIndependent, 1}) {
			t.Errorf("got %+v", got)
		}
	})
}

func TestP2PDType(t *testing.T) {
	for _, tc := range []struct {
		open      bool
		mapping   Class
		filtering Class
		want      Type
	}{
		{true, EndpointIndependent, EndpointIndependent, OpenInternet},
		// No translation behind a firewall (IPv6 at home): the filtering names it.
		{true, EndpointIndependent, AddressDependent, RestrictNAT},
		{true, EndpointIndependent, AddressAndPortDependent, RestrictPortNAT},
		{true, EndpointIndependent, Unknown, OpenInternet},
		{false, EndpointIndependent, EndpointIndependent, FullCone},
		{false, EndpointIndependent, AddressDependent, RestrictNAT},
		{false, EndpointIndependent, AddressAndPortDependent, RestrictPortNAT},
		{false, AddressAndPortDependent, AddressAndPortDependent, SymmetricNAT},
		{false, AddressDependent, AddressDependent, SymmetricNAT},
		{false, Unknown, Unknown, SymmetricNAT},
	} {
		if got := p2pdType(tc.open, tc.mapping, tc.filtering); got != tc.want {
			t.Errorf("%v %s %s: got %v, want %v", tc.open, tc.mapping, tc.filtering, got, tc.want)
		}
	}
}
