package identity

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bcryptThreadName is the name of the threads compares run on, as top -H
// and /proc/<pid>/task/*/comm show it: an operator (and authd-bench) can
// tell bcrypt's CPU from the rest of authd's.
const bcryptThreadName = "authd-bcrypt"

// nameThread names the calling OS thread (PR_SET_NAME, at most 15 bytes);
// the name goes with the thread, which ends with its compare.
func nameThread(name string) {
	b := append([]byte(name), 0)
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0)
}

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

// threadCPU is the CPU time the calling OS thread has used; -1 if
// unknown. CLOCK_THREAD_CPUTIME_ID counts to the nanosecond, the time
// the thread has run since the scheduler last accounted it included.
// getrusage(RUSAGE_THREAD), which this replaced, leaves that time out:
// it moves once a tick (4 ms at the usual HZ=250), so a compare read
// 1.5 ms short on average (61.0 ms against 62.6 ms at cost 10) and
// authd_bcrypt_cpu_seconds_total, and the priority's judgement of a
// compare's share of the CPU, were 2–3 % low.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return -1
	}
	return time.Duration(ts.Nano())
}
