package identity

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"authd/store"
)

// bcryptGate keeps bcrypt, deliberately the most expensive thing authd
// does (about 70 ms of a core at cost 10), from starving everything else
// when logins arrive faster than the CPUs can hash:
//
//   - compares run in a bounded number of slots (slots.go): by default one
//     per CPU while logins are all there is to do, and one CPU fewer as
//     soon as a refresh, verify or health check is in flight
//     (BcryptSlotRange);
//   - at most `queue` logins wait for a slot, each at most `wait`; a login
//     that finds the queue full is shed at once (Busy: over HTTP, 503 +
//     Retry-After, decided before the body is read), so a flood costs the
//     server almost nothing beyond its ceiling;
//   - each compare runs on an OS thread kept for compares (workers.go) at
//     a lower scheduling priority (nice), so that authd's threads serving
//     refresh, verify and health run ahead of it whenever they have work.
//     (Only within the process: the kernel's autogroups and cgroups share
//     CPU between processes whatever a thread's nice value, which is why
//     one CPU is left to PostgreSQL and the rest while they have work.) A
//     nice value is no share, though: against a CPU-bound neighbour at
//     nice 0 in the same group, a thread at nice 10 gets a tenth of a CPU,
//     and a login would take seconds. So the gate watches how much of the
//     CPU its compares get (priority.go) and runs them at the normal
//     priority while they are starved.
//
// Because a compare holds one of Go's Ps while it runs, the process needs
// more Ps than slots for the rest of its work not to queue behind bcrypt;
// `authd serve` adds the wide slots to GOMAXPROCS.
type bcryptGate struct {
	slots   *slots
	wait    time.Duration
	prio    *priority
	workers *workers
	m       *metrics
}

// DefaultBcryptSlots is the number of concurrent bcrypt compares for procs
// CPUs while latency-sensitive requests are in flight: all but one, and
// at least one. The CPU left over is not waste: on the 2-CPU machine of
// the README's storm figures, compares on both CPUs (even at the lowest
// priority) made PostgreSQL's commit fsyncs wait — pg_stat_activity showed
// refreshes in WALSync — and refresh p99 went from 2 ms to 55–160 ms; with
// one CPU left it stays under 15 ms.
func DefaultBcryptSlots(procs int) int { return max(1, procs-1) }

// BcryptSlotRange is how many compares run at once on cpus CPUs: narrow
// while latency-sensitive requests are about, wide while logins are all
// there is. fixed > 0 (AUTHD_BCRYPT_SLOTS) is both.
func BcryptSlotRange(cpus, fixed int) (narrow, wide int) {
	if fixed > 0 {
		return fixed, fixed
	}
	return DefaultBcryptSlots(cpus), max(1, cpus)
}

// widenAfter is how long no latency-sensitive request must have been in
// flight before compares may take the wide slots: a few compares' time,
// so that the gaps between the refreshes of a steady trickle let none in.
const widenAfter = 100 * time.Millisecond

// loginQueueTarget is how long the default login queue takes the slots
// to get through: a login queued behind a full queue is answered within
// about a second, storm or not, instead of after the whole
// AUTHD_LOGIN_QUEUE_WAIT (which stays the hard bound, for compares that
// slow down).
const loginQueueTarget = time.Second

// DefaultLoginQueue is how many logins may wait for the slots: as many as
// they finish in loginQueueTarget at one compare per `compare`, and at
// least 4 per slot. A burst the slots serve within a second (fifteen
// users pressing "log in" together on a 2-CPU machine) is served, not sent
// away; in a flood, everyone past that is told at once to come back. On
// the README's machine: 1 slot, 65 ms a compare — 15.
func DefaultLoginQueue(slots int, compare time.Duration) int {
	n := 4 * slots
	if compare > 0 {
		n = max(n, int(int64(slots)*int64(loginQueueTarget)/int64(compare)))
	}
	return min(n, 10000)
}

func newBcryptGate(narrow, wide, queue int, wait time.Duration, nice int, m *metrics) *bcryptGate {
	g := &bcryptGate{slots: newSlots(narrow, wide, queue, widenAfter), wait: wait, prio: newPriority(nice), workers: newWorkers(workerLinger, wide), m: m}
	// The gate's own counters, read at scrape time: no second copy to
	// keep in step.
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authd_bcrypt_queue_depth", Help: "Logins waiting for a bcrypt slot.",
		}, func() float64 { return float64(g.slots.waiting.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authd_bcrypt_slots", Help: "Concurrent bcrypt compares allowed while latency-sensitive requests are in flight (AUTHD_BCRYPT_SLOTS).",
		}, func() float64 { return float64(g.slots.narrow) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authd_bcrypt_slots_max", Help: "Concurrent bcrypt compares allowed while logins are all there is to do.",
		}, func() float64 { return float64(g.slots.wide) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authd_bcrypt_slots_now", Help: "Concurrent bcrypt compares allowed now: authd_bcrypt_slots while a latency-sensitive request is in flight or ended within the last 100 ms, else authd_bcrypt_slots_max.",
		}, func() float64 { return float64(g.slots.limit()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authd_bcrypt_running", Help: "bcrypt compares running.",
		}, func() float64 { return float64(g.slots.running()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authd_bcrypt_nice", Help: "Nice value new bcrypt compares run at: AUTHD_BCRYPT_NICE, or 0 while compares are starved of CPU.",
		}, func() float64 { return float64(g.prio.nice()) }),
		// The default queue is measured at start-up: say what it came to.
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authd_bcrypt_queue_limit", Help: "Logins allowed to wait for a bcrypt slot (AUTHD_LOGIN_QUEUE, or measured at start-up).",
		}, func() float64 { return float64(g.slots.queue) }),
	)
	return g
}

// run runs f, which does bcrypt work, in a free slot. It returns errBusy
// when the queue is full or no slot frees up within the wait, and a
// Timeout when ctx ends first — also while f runs: f cannot be
// interrupted, so it finishes (and frees its slot) on its own, and the
// caller must not read what f writes unless run returned nil.
func (g *bcryptGate) run(ctx context.Context, f func()) error { return g.runIn(ctx, nil, f) }

// runIn is run for a login that admit let in, in the place p it kept.
func (g *bcryptGate) runIn(ctx context.Context, p *place, f func()) error {
	waited, queued, err := g.slots.acquire(ctx, g.wait, p)
	if err == nil || queued { // one shed at once did not wait
		g.m.bcryptWait.Observe(waited.Seconds())
	}
	if err != nil {
		return err
	}
	if ctx.Err() != nil { // the request ended while it waited: skip the compare
		g.slots.release()
		return Timeout(nil)
	}
	// done waits for the slot's release, not only for f: a client that
	// posts again as soon as it is answered must not find its own
	// finished compare still holding the slot (and be shed at the door
	// for a queue it alone filled). The release follows f by the worker's
	// park, a few microseconds.
	done := make(chan struct{})
	nice := g.prio.nice()
	g.workers.run(nice, func() {
		if cpu := g.prio.run(nice, f, g.slots.quietSince); cpu > 0 {
			g.m.bcryptCPU.Add(cpu.Seconds())
		}
	}, func() {
		g.slots.release()
		close(done)
	})
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return Timeout(nil)
	}
}

// hashPassword hashes password at the configured cost in a bcrypt slot:
// hashing costs what a compare does, so it waits for a slot like one. Its
// errors are the gate's (shed, timed out) or Failure.
func (c *Core) hashPassword(ctx context.Context, password string) (string, error) {
	var (
		h       string
		hashErr error
	)
	if err := c.bcrypt.run(ctx, func() { h, hashErr = store.HashPassword(password, c.cfg.BcryptCost) }); err != nil {
		return "", err
	}
	if hashErr != nil {
		return "", Failure(hashErr)
	}
	return h, nil
}
