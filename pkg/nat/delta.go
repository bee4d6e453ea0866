package nat

// Sample is one delta probe: the local port a socket was bound to and the
// external port a STUN server saw. OK is false when no answer came.
type Sample struct {
	Local, Mapped int
	OK            bool
}

// portModulus is the modulus P2PD's field_dist uses for port distances.
const portModulus = 65535

// portDist is the circular distance between two ports.
func portDist(a, b int) int {
	d := a - b
	if d < 0 {
		d = -d
	}
	d %= portModulus
	return min(d, portModulus-d)
}

// DeltaThreshold is P2PD's threshold for n delta tests: int(n/2)-1.
func DeltaThreshold(n int) int { return n/2 - 1 }

// roundStats are the counts P2PD's delta test takes over one round.
type roundStats struct {
	equal       int
	preserv     int
	preservDist map[int]bool
	distNo      map[int]int // mapped distance, when local distance != 1
	localDist   map[int]int // mapped distance, when local distance == 1
}

func stats(samples []Sample) roundStats {
	st := roundStats{preservDist: map[int]bool{}, distNo: map[int]int{}, localDist: map[int]int{}}
	for i, s := range samples {
		if s.OK && s.Local == s.Mapped {
			st.equal++
		}
		if i == 0 || !s.OK || !samples[i-1].OK {
			continue
		}
		p := samples[i-1]
		dl := portDist(p.Local, s.Local)
		dm := portDist(p.Mapped, s.Mapped)
		switch {
		case dm == dl && s.Mapped != s.Local:
			st.preserv++
			st.preservDist[dm] = true
		case dl != 1:
			st.distNo[dm]++
		default:
			st.localDist[dm]++
		}
	}
	return st
}

// most returns the key with the highest count (the smallest key on ties).
func most(m map[int]int) (key, count int) {
	for k, c := range m {
		if c > count || (c == count && k < key) {
			key, count = k, c
		}
	}
	return key, count
}

// ClassifyDelta is P2PD's delta test decision. round1 holds probes from
// random local ports, round2 probes from consecutive local ports, each in
// the order their mappings were created. threshold is usually
// DeltaThreshold(len(round1)). With no answered pair at all the delta is
// unknown.
func ClassifyDelta(round1, round2 []Sample, threshold int) Delta {
	answered := 0
	for _, s := range append(append([]Sample(nil), round1...), round2...) {
		if s.OK {
			answered++
		}
	}
	if answered < 2 {
		return Delta{Type: DeltaUnknown}
	}
	r1 := stats(round1)
	if r1.equal >= threshold {
		return Delta{Type: DeltaEqual}
	}
	if r1.preserv >= threshold && len(r1.preservDist) >= 2 {
		return Delta{Type: DeltaPreserving}
	}
	if d, n := most(r1.distNo); n >= threshold {
		return Delta{Type: DeltaIndependent, Value: d}
	}
	r2 := stats(round2)
	if d, n := most(r2.localDist); n >= threshold {
		return Delta{Type: DeltaDependent, Value: d}
	}
	return Delta{Type: DeltaRandom}
}
