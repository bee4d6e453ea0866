package agent

import "time"

// SetUDPPunchLate makes a's UDP punch datagrams start what late returns
// after each meeting time: a side that is late (tests only).
func SetUDPPunchLate(a *Agent, late func() time.Duration) { a.punch.udpLate = late }
