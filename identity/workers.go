package identity

import (
	"runtime"
	"slices"
	"sync"
	"time"
)

// workers are the OS threads compares run on. Each is locked to its
// goroutine for its whole life and runs nothing but compares, at the one
// nice value it was made with: a thread's lower priority never carries
// over to other work, and unprivileged a nice value only goes up, so a
// compare that must run at another value (priority.go) gets a thread of
// that value. A thread that finishes a compare waits up to linger for the
// next before it ends: ending it after every compare, and making a new
// one for the next, left its CPU idle in between — 1–1.5 % of both CPUs
// with logins alone on the 2-CPU machine of docs/performance.md, against
// 0.1–0.2 % with the thread kept.
type workers struct {
	linger  time.Duration
	maxIdle int // idle threads kept per nice value; more end at once

	mu   sync.Mutex
	idle map[int][]*worker // by nice value, the most recently idle last
}

// worker is one thread's goroutine: jobs hands it its next compare.
type worker struct {
	nice int
	jobs chan job
}

// job is a compare, f, and then what is done once its thread is ready for
// the next (freeing the compare's slot: the login it lets in finds the
// thread idle).
type job struct{ f, then func() }

// workerLinger is how long a thread waits for its next compare: several
// compares' time, so that logins arriving one after another keep theirs.
const workerLinger = time.Second

func newWorkers(linger time.Duration, maxIdle int) *workers {
	return &workers{linger: linger, maxIdle: max(1, maxIdle), idle: map[int][]*worker{}}
}

// run has f run on a thread at nice, an idle one or a new one, and then
// run once the thread is idle again (or ending). It waits for neither.
func (ws *workers) run(nice int, f, then func()) {
	ws.mu.Lock()
	if l := ws.idle[nice]; len(l) > 0 {
		w := l[len(l)-1]
		ws.idle[nice] = l[:len(l)-1]
		ws.mu.Unlock()
		w.jobs <- job{f, then} // buffered: an idle worker's channel is empty
		return
	}
	ws.mu.Unlock()
	w := &worker{nice: nice, jobs: make(chan job, 1)}
	w.jobs <- job{f, then}
	go ws.loop(w)
}

// loop is a worker's life: its thread locked and never unlocked (when the
// goroutine ends, the thread ends with it), named and at its nice value;
// then compares until none comes within linger.
func (ws *workers) loop(w *worker) {
	runtime.LockOSThread()
	nameThread(bcryptThreadName)
	lowerThreadPriority(w.nice)
	linger := time.NewTimer(ws.linger)
	defer linger.Stop()
	for {
		select {
		case j := <-w.jobs:
			j.f()
			parked := ws.park(w)
			j.then()
			if !parked {
				return
			}
			linger.Reset(ws.linger)
		case <-linger.C:
			if ws.retire(w) {
				return
			}
			// Handed a compare as the wait ended: it is on its way.
			linger.Reset(ws.linger)
		}
	}
}

// park makes w idle, unless enough threads at its nice value are: then
// w ends (false).
func (ws *workers) park(w *worker) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if len(ws.idle[w.nice]) >= ws.maxIdle {
		return false
	}
	ws.idle[w.nice] = append(ws.idle[w.nice], w)
	return true
}

// retire takes the idle w out of service; false if run has just taken it
// (a compare is on its way to it).
func (ws *workers) retire(w *worker) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	i := slices.Index(ws.idle[w.nice], w)
	if i < 0 {
		return false
	}
	ws.idle[w.nice] = slices.Delete(ws.idle[w.nice], i, i+1)
	return true
}
