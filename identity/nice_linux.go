package identity

import (
	"syscall"
	"time"
)

// lowerThreadPriority sets the calling OS thread's nice value. On Linux
// the nice value belongs to the thread (setpriority with a thread id), so
// only the thread the caller is locked to runs at the lower priority.
// Raising one's own nice value needs no privilege; a failure only leaves
// the thread at the normal priority, so it is ignored.
func lowerThreadPriority(nice int) {
	if nice <= 0 {
		return
	}
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice)
}

// rusageThread is Linux's RUSAGE_THREAD: the calling thread's usage.
const rusageThread = 1

// threadCPU is the CPU time the calling OS thread has used; -1 if
// unknown.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
