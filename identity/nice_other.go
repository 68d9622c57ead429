//go:build !linux

package server

// lowerThreadPriority is a no-op where threads have no nice value of
// their own: bcrypt then runs at the process's priority.
func lowerThreadPriority(int) {}
