package main

// gcPercent is mqttd's garbage-collector target (GOGC) when the environment
// sets none. A broker allocates per delivery and holds little live heap
// under load, so the default 100 collects very often: perf put 12% of
// mqttd's CPU in GC under 10 -> 10 QoS 1, and 400 gave 1.08-1.30x the
// deliveries/s in the same run (BenchmarkQoS1Delivery in pkg/mqttbroker
// measures it). Idle connections allocate nothing, so their memory stays
// the same (31 vs 32 KiB per connection at 3,000).
// It is applied with config.TuneGC, unless GOGC is set.
const gcPercent = 400
