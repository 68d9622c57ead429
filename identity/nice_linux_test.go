package identity

import (
	"runtime"
	"testing"
	"time"
)

// TestThreadCPUIsFinerThanATick: threadCPU moves with the thread's work,
// not once a scheduler tick. Read over and over while the thread spins
// through 20 ms of CPU, it must take hundreds of values: a clock that
// moves once a tick (getrusage's: every 1–10 ms, by the kernel's HZ)
// takes at most 21, and read a compare's CPU short by half a tick.
func TestThreadCPUIsFinerThanATick(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU()
	if start < 0 {
		t.Fatal("threadCPU is unknown on Linux")
	}
	deadline := time.Now().Add(30 * time.Second) // a clock that never moves
	values, last := 1, start
	for last-start < 20*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("threadCPU moved %s in 30 s of spinning", last-start)
		}
		if now := threadCPU(); now != last {
			if now < last {
				t.Fatalf("threadCPU went back from %s to %s", last, now)
			}
			values, last = values+1, now
		}
	}
	if values < 200 {
		t.Errorf("threadCPU took %d values over 20 ms of the thread's CPU; want hundreds (a clock finer than the scheduler's tick)", values)
	}
}
