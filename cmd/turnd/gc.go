package main

// gcPercent is turnd's garbage-collector target (GOGC) when the environment
// sets none. pion allocates per relayed datagram (each ChannelData frame to a
// client is a new buffer) while a relay's live heap is small, so the default
// 100 collects often: under the 1200 B uclient flood 400 cut turnd's CPU
// per echoed datagram by about a sixth in an interleaved A/B
// (docs/benchmarks.md). The cost is a heap that may grow to five times the
// live one between collections instead of twice.
// It is applied with config.TuneGC, unless GOGC is set.
const gcPercent = 400
