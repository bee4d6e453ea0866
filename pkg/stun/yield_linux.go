package stun

import "syscall"

// yieldThread gives the thread's CPU to another runnable thread, if any
// (sched_yield(2); see yieldAfter). It is a raw system call: it returns at
// once, and entering Go's system-call path would wake sysmon for nothing
// (the reason udpbatch's calls are raw too).
func yieldThread() {
	syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
}
