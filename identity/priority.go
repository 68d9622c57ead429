package identity

import (
	"sync/atomic"
	"time"
)

// priority is the nice value bcrypt threads run at: the configured one
// (AUTHD_BCRYPT_NICE), unless the last compare measured was starved of
// CPU — it ran less than starvedBelow of its time — then 0, the
// process's own, until a compare at 0 runs freely again (above
// freeAbove). A nice value is a weight, not a share: against a nice-0
// neighbour in the same scheduling group, a nice-10 thread gets about a
// tenth of a CPU, and a busy neighbour would turn into a login outage.
// Unprivileged, a thread's nice value only goes up, so the choice is made
// for each compare, which runs on a thread of that value (workers), never
// undone on one.
type priority struct {
	configured int
	starved    atomic.Bool
}

const (
	starvedBelow = 0.5
	freeAbove    = 0.8
	// judgeAfter: a compare shorter than this (a low cost, a test) says
	// nothing about the CPU it got.
	judgeAfter = 5 * time.Millisecond
)

func newPriority(nice int) *priority { return &priority{configured: nice} }

// nice is the nice value for the next compare.
func (p *priority) nice() int {
	if p.starved.Load() {
		return 0
	}
	return p.configured
}

// run runs f on the calling thread, which is locked to it at nice (a value
// p.nice() gave), and learns from the CPU f got — if alone(start) says
// that nothing of authd's own that bcrypt is meant to yield to ran
// meanwhile: a compare that waited for refreshes and verifies was not
// starved, it was doing its job. It returns the CPU f used, -1 if
// unknown.
func (p *priority) run(nice int, f func(), alone func(since time.Time) bool) time.Duration {
	start, cpu0 := time.Now(), threadCPU()
	f()
	cpu := time.Duration(-1)
	if cpu1 := threadCPU(); cpu0 >= 0 && cpu1 >= 0 {
		cpu = cpu1 - cpu0
	}
	if alone(start) {
		p.observe(nice, time.Since(start), cpu)
	}
	return cpu
}

// observe learns from a compare at nice that took wall time and cpu of
// CPU time (negative: unknown).
func (p *priority) observe(nice int, wall, cpu time.Duration) {
	if cpu < 0 || wall < judgeAfter || p.configured == 0 {
		return
	}
	share := float64(cpu) / float64(wall)
	switch {
	case nice > 0 && share < starvedBelow:
		p.starved.Store(true)
	case nice == 0 && share > freeAbove:
		p.starved.Store(false)
	}
}
