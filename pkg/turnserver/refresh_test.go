package turnserver

import (
	"testing"

	"github.com/pion/stun/v2"
)

// A Refresh for an allocation the server does not hold (it restarted, the
// allocation expired) gets 437 Allocation Mismatch at once, so the client
// re-allocates instead of retransmitting into silence.
func TestRefreshWithoutAllocation437(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s, _ := testServer(t, nil)
			r := newRawClient(t, network, listenAddr(s, network), "alice", "alice-pw")
			r.nonceFromServer()
			lifetime := rawAttr{stun.AttrLifetime, []byte{0, 0, 2, 88}}
			res := r.request(stun.MethodRefresh, lifetime)
			if got := r.code(res); got != 437 {
				t.Fatalf("Refresh without an allocation answered %d, want 437", got)
			}
			if err := stun.MessageIntegrity(r.key).Check(res); err != nil {
				t.Fatalf("437 not signed: %v", err)
			}
			if v := metric(t, s.f.m.refreshMismatch); v != 1 {
				t.Errorf("turnd_refresh_mismatches_total = %v, want 1", v)
			}
			if code := r.code(r.allocate()); code != 0 {
				t.Fatalf("allocate after the 437: %d", code)
			}
			if got := r.code(r.request(stun.MethodRefresh, lifetime)); got != 0 {
				t.Fatalf("Refresh of a live allocation answered %d", got)
			}
		})
	}
}
