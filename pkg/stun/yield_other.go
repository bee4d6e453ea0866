//go:build !linux

package stun

// yieldThread does nothing here: reads go through Go's poller, and
// udpbatch.Waits, which tells a continuous stream of input, is 0.
func yieldThread() {}
