//go:build !linux

package identity

import "time"

// lowerThreadPriority is a no-op where threads have no nice value of
// their own: bcrypt then runs at the process's priority.
func lowerThreadPriority(int) {}

// threadCPU is unknown here: the priority never adapts, as it never
// lowers.
func threadCPU() time.Duration { return -1 }

const bcryptThreadName = ""

// nameThread is a no-op: threads have no names of their own here.
func nameThread(string) {}
