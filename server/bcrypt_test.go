package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// threadNices reads the nice value of every thread of this process from
// /proc (field 19 of /proc/self/task/<tid>/stat).
func threadNices(t *testing.T) map[string]int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/self/task/*/stat")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range dirs {
		if n := niceOf(t, p); n != noThread {
			out[p] = n
		}
	}
	return out
}

const noThread = -100

// niceOf reads a thread's nice value from its stat file; noThread if the
// thread has ended.
func niceOf(t *testing.T, stat string) int {
	b, err := os.ReadFile(stat)
	if err != nil {
		return noThread
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis (field 3 onwards).
	rest := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, err := strconv.Atoi(rest[19-3])
	if err != nil {
		t.Errorf("%s: nice %q: %v", stat, rest[19-3], err)
	}
	return n
}

// TestBcryptRunsOnALowerPriorityThread: while a compare runs, one thread
// of the process has the configured nice value; when it is done, none
// has — the lowered priority never leaks to other work.
func TestBcryptRunsOnALowerPriorityThread(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatalf("thread priorities are a Linux feature; this test runs on Linux (GOOS %s)", runtime.GOOS)
	}
	const nice = 13
	g := newBcryptGate(1, 1, time.Second, nice, newMetrics(prometheus.NewRegistry(), nil, time.Now))
	// Go never ends the process's main thread: if a compare ran there,
	// the runtime parks it for good instead, so it runs nothing more and
	// does not count.
	mainThread := fmt.Sprintf("/proc/self/task/%d/stat", os.Getpid())
	count := func(withMain bool) int {
		n := 0
		for p, v := range threadNices(t) {
			if v == nice && (withMain || p != mainThread) {
				n++
			}
		}
		return n
	}
	if n := count(false); n != 0 {
		t.Fatalf("%d threads at nice %d before any compare", n, nice)
	}
	release, seen := make(chan struct{}), make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		done <- g.run(context.Background(), func() {
			seen <- niceOf(t, "/proc/thread-self/stat")
			<-release
		})
	}()
	if n := <-seen; n != nice {
		t.Errorf("the compare ran at nice %d, want %d", n, nice)
	}
	if n := count(false); n > 1 {
		t.Errorf("%d threads at nice %d during one compare", n, nice)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The thread exits with its goroutine, just after run returns.
	deadline := time.Now().Add(5 * time.Second)
	for count(false) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a thread at nice %d outlived its compare", nice)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBcryptGateDeadline: a caller whose request deadline passes while
// its compare runs gets a timeout at the deadline, and the slot is freed
// when the compare ends.
func TestBcryptGateDeadline(t *testing.T) {
	g := newBcryptGate(1, 0, time.Second, 0, newMetrics(prometheus.NewRegistry(), nil, time.Now))
	release := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := g.run(ctx, func() { <-release })
	var e *Error
	if !errors.As(err, &e) || e.Status != 503 || e.Message != "Request timed out" {
		t.Fatalf("got %v, want 503 Request timed out", err)
	}
	// The compare still holds the slot, and the queue is 0: shed at once.
	if err := g.run(context.Background(), func() {}); !errors.As(err, &e) || e.Message != "Too many logins at once; try again shortly" {
		t.Fatalf("with the slot taken and no queue: got %v, want 503 Too many logins", err)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := g.run(context.Background(), func() {}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot was not freed when the compare ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDefaultLoginQueue(t *testing.T) {
	for _, tt := range []struct {
		slots   int
		compare time.Duration
		want    int
	}{
		{1, 65 * time.Millisecond, 15}, // what the slot finishes in a second
		{3, 100 * time.Millisecond, 30},
		{2, time.Second, 8}, // at least 4 per slot
		{2, 0, 8},
		{1, time.Microsecond, 10000}, // bounded
	} {
		if got := DefaultLoginQueue(tt.slots, tt.compare); got != tt.want {
			t.Errorf("DefaultLoginQueue(%d, %s) = %d, want %d", tt.slots, tt.compare, got, tt.want)
		}
	}
}
