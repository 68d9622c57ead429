package identity

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
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
// of the process has the configured nice value; the next compare runs on
// the same thread, kept for it; when none comes within the linger, the
// thread ends and none has the value — the lowered priority never leaks
// to other work.
func TestBcryptRunsOnALowerPriorityThread(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatalf("thread priorities are a Linux feature; this test runs on Linux (GOOS %s)", runtime.GOOS)
	}
	const nice = 13
	g := newBcryptGate(1, 1, 1, time.Second, nice, newMetrics(prometheus.NewRegistry(), time.Now))
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
	var tid int
	// The first compare waits for the test, using no CPU: judged, it
	// would look starved once it had waited judgeAfter (a busy machine
	// takes that long between seen and release), and the next compare
	// would run at nice 0 on another thread. A latency-sensitive request
	// in flight meanwhile keeps it from being judged.
	g.slots.enter()
	go func() {
		done <- g.run(context.Background(), func() {
			tid = syscall.Gettid()
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
	g.slots.exit()
	// The next compare goes to the same thread, which waited for it.
	var next, nextNice int
	if err := g.run(context.Background(), func() { next, nextNice = syscall.Gettid(), niceOf(t, "/proc/thread-self/stat") }); err != nil {
		t.Fatal(err)
	}
	if next != tid || nextNice != nice {
		t.Errorf("the next compare ran on thread %d at nice %d, want the kept thread %d at %d", next, nextNice, tid, nice)
	}
	// With no compare within the linger, the thread ends.
	deadline := time.Now().Add(workerLinger + 5*time.Second)
	for count(false) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a thread at nice %d outlived its compare", nice)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gateMessage is the message of the *Error err, or "ok" for nil.
func gateMessage(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return "ok"
	}
	var e *Error
	if !errors.As(err, &e) || (e.Kind != Busy && e.Kind != Unavailable) || e.Code != "PT503" || e.RetryAfter != 1 {
		t.Fatalf("got %v, want Busy or Unavailable (PT503) with Retry-After: 1", err)
	}
	return e.Message
}

const (
	busy     = "Too many logins at once; try again shortly"
	timedOut = "Request timed out"
)

// TestBcryptGateDeadline: a caller whose request deadline passes while
// its compare runs gets a timeout at the deadline, and the slot is freed
// when the compare ends.
func TestBcryptGateDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newBcryptGate(1, 1, 0, time.Second, 0, newMetrics(prometheus.NewRegistry(), time.Now))
		release := make(chan struct{})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		if got := gateMessage(t, g.run(ctx, func() { <-release })); got != timedOut {
			t.Fatalf("got %q, want %q", got, timedOut)
		}
		if d := time.Since(start); d != 50*time.Millisecond {
			t.Errorf("timed out after %s, want at the 50 ms deadline", d)
		}
		// The compare still holds the slot, and the queue is 0: shed at once.
		if got := gateMessage(t, g.run(context.Background(), func() {})); got != busy {
			t.Fatalf("with the slot taken and no queue: got %q, want %q", got, busy)
		}
		close(release)
		synctest.Wait() // the compare's thread has freed the slot
		if got := gateMessage(t, g.run(context.Background(), func() {})); got != "ok" {
			t.Fatalf("after the compare ended: got %q, want the slot", got)
		}
		outlastWorkers() // the gate's idle threads end
	})
}

// TestBcryptGateQueue: with the slots busy, up to queue callers wait, each
// at most the wait, and one more is shed at once; a caller whose request
// ends while it waits is told so and its compare never runs.
func TestBcryptGateQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const wait = 2 * time.Second
		g := newBcryptGate(1, 1, 2, wait, 0, newMetrics(prometheus.NewRegistry(), time.Now))
		release := make(chan struct{})
		holder := make(chan error, 1)
		go func() { holder <- g.run(context.Background(), func() { <-release }) }()
		synctest.Wait()

		// Two wait: one until the wait is over, one until its request ends.
		queued := make(chan string, 1)
		go func() { queued <- gateMessage(t, g.run(context.Background(), func() {})) }()
		ctx, cancel := context.WithCancel(context.Background())
		ended := make(chan string, 1)
		ran := false
		go func() { ended <- gateMessage(t, g.run(ctx, func() { ran = true })) }()
		synctest.Wait()
		if n := g.slots.waiting.Load(); n != 2 {
			t.Fatalf("%d callers waiting, want 2", n)
		}

		// The queue is full: the next is shed without waiting at all.
		start := time.Now()
		if got := gateMessage(t, g.run(context.Background(), func() {})); got != busy || time.Since(start) != 0 {
			t.Errorf("with the queue full: got %q after %s, want %q at once", got, time.Since(start), busy)
		}

		cancel()
		if got := <-ended; got != timedOut || ran {
			t.Errorf("request ended while waiting: got %q (compare ran: %v), want %q and no compare", got, ran, timedOut)
		}
		time.Sleep(wait - time.Since(start) - time.Nanosecond)
		synctest.Wait()
		select {
		case got := <-queued:
			t.Fatalf("the queued caller got %q before its %s wait was over", got, wait)
		default:
		}
		time.Sleep(time.Nanosecond)
		if got := <-queued; got != busy {
			t.Errorf("after the wait: got %q, want %q", got, busy)
		}

		close(release)
		if err := <-holder; err != nil {
			t.Errorf("the compare in the slot: %v", err)
		}
		synctest.Wait()
		if n := g.slots.waiting.Load(); n != 0 {
			t.Errorf("%d callers still counted as waiting", n)
		}
		if got := gateMessage(t, g.run(context.Background(), func() {})); got != "ok" {
			t.Errorf("with the slot free: got %q", got)
		}
		outlastWorkers() // the gate's idle threads end
	})
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

// outlastWorkers waits, in a synctest bubble, until the gate's idle
// threads have lingered their time and ended: a bubble must not end with
// one of them waiting.
func outlastWorkers() {
	time.Sleep(workerLinger)
	synctest.Wait()
}
