package identity

import "syscall"

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
