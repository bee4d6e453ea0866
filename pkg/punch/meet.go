package punch

import "time"

// MinLead is the least time from sending a PUNCH to the meeting.
const MinLead = 200 * time.Millisecond

// MeetAt is the meeting time proposed at now (a corrected clock): the
// offer must reach the peer and its answer come back, so
// now + max(1.5 × the signalling round trip, MinLead) + both clocks'
// uncertainties (either may be that far off true time).
func MeetAt(now time.Time, rtt, mine, peer time.Duration) time.Time {
	return now.Add(max(rtt*3/2, MinLead) + max(mine, 0) + max(peer, 0))
}

// TooLate reports whether a peer that received an offer for at, at now,
// cannot get its answer back in time: the answer takes about oneWay, and
// the offerer needs it before at (plus its own clock's uncertainty). Such
// a peer answers with a new meeting time.
func TooLate(now, at time.Time, oneWay, uncertainty time.Duration) bool {
	return !now.Add(max(oneWay, 0) + max(uncertainty, 0)).Before(at)
}

// Initiator reports whether the node mine runs the Noise initiator (and
// picks the surviving connection) in a punch with peer: the lower node id
// does. Both sides compute it alike, so exactly one pipe survives.
func Initiator(mine, peer string) bool { return mine < peer }
