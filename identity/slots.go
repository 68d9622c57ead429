package identity

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// slots are the bcrypt gate's places, handed out first come, first served:
// `narrow` of them at all times, and up to `wide` while no latency-sensitive
// request (refresh, verify, health: Urgent) is in flight or has been for
// `quiet`. Logins alone get every CPU; as soon as a refresh arrives, no
// new compare starts beyond the narrow slots, and the ones running (at
// most one compare long, about 70 ms at cost 10) finish at the gate's
// lower priority. The quiet period keeps a steady trickle of refreshes,
// with gaps of a millisecond between them, from letting a compare into the
// wide slots in every gap.
type slots struct {
	narrow, wide int
	queue        int
	quiet        time.Duration

	// urgent counts latency-sensitive requests in flight; lastUrgent is
	// when the last one ended (time.Now().UnixNano(): the real clock, not
	// the core's, which tests move to expire tokens).
	urgent     atomic.Int64
	lastUrgent atomic.Int64
	// waiting mirrors len(waiters) under mu, for exit, which every
	// latency-sensitive request calls and which must not take the lock
	// when nobody waits, and for the queue's gauge.
	waiting atomic.Int64
	// entering counts the logins let in by admit that have not reached
	// the gate yet: they are doing their database work (the throttle, the
	// user), and a place is kept for each. A login leaves it for the
	// queue or a slot under mu (take).
	entering atomic.Int64

	mu      sync.Mutex
	inUse   int
	waiters []chan struct{} // oldest first; closed when granted a slot
	widen   *time.Timer     // armed while logins wait out the quiet period
}

func newSlots(narrow, wide, queue int, quiet time.Duration) *slots {
	return &slots{narrow: narrow, wide: max(narrow, wide), queue: queue, quiet: quiet}
}

// limit is how many compares may run now. It reads atomics only: the
// gate calls it under mu, the authd_bcrypt_slots_now gauge without.
func (s *slots) limit() int {
	if s.urgent.Load() > 0 || time.Now().UnixNano()-s.lastUrgent.Load() < int64(s.quiet) {
		return s.narrow
	}
	return s.wide
}

// room is how many more logins the gate has a place for: the queue's
// free places and the narrow slots nobody holds, less the logins let in
// and on their way; and entering as it read it. It reads them under mu,
// where no login moves from one count to the next, so it counts each
// login once. Read without the lock, a login on its way from its kept
// place into a slot could be counted in both, and a login that had a
// place was shed (TestNoLoginCountedTwice; TestLoginQueueFullIsShedAtOnce
// failed so). The lock is held for a few loads: with two goroutines
// asking at once, a check takes 8 ns against 0.5 ns without it.
func (s *slots) room() (room, entering int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entering = s.entering.Load()
	return int64(s.queue) + max(0, int64(s.narrow)-int64(s.inUse)) - int64(len(s.waiters)) - entering, entering
}

// full reports whether a login arriving now would be shed at once: the
// slots taken and the queue full, counting the logins on their way to it.
func (s *slots) full() bool {
	room, _ := s.room()
	return room <= 0
}

// A place is kept at the gate for a login let in by admit, from the door
// until it reaches the gate (take) or gives up (give).
type place struct {
	s    *slots
	once sync.Once
}

// give gives the place back; only the first call counts.
func (p *place) give() {
	if p != nil {
		p.once.Do(func() { p.s.entering.Add(-1) })
	}
}

// admit lets a login in if the gate will have a place for it when it gets
// there, and keeps that place until the login reaches the gate or gives
// it back. A login refused here is shed before it costs a database round
// trip: without the kept places, every login of a flood that found the
// queue a place short of full did its database work, and most were then
// shed at the gate anyway — under 64 clients posting without back-off,
// more PostgreSQL CPU than the logins that got through.
func (s *slots) admit() (*place, bool) {
	for {
		// A move into or out of entering since room read it fails the
		// swap, and the count is read again. Moves that cancel out (one
		// login reaches the gate as another is let in) pass: then one
		// login more may be let in, which the gate sheds if it must —
		// never one fewer.
		room, e := s.room()
		if room <= 0 {
			return nil, false
		}
		if s.entering.CompareAndSwap(e, e+1) {
			return &place{s: s}, true
		}
	}
}

// take takes a slot if one is free and nobody waits (ok), or else joins
// the queue (a channel closed when a slot is granted), or finds it full
// (both zero). Either way the place kept for the caller (p, nil if none)
// is given back, after the slot or the queue counts it.
func (s *slots) take(p *place) (ok bool, wait chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer p.give()
	if len(s.waiters) == 0 && s.inUse < s.limit() {
		s.inUse++
		return true, nil
	}
	if len(s.waiters) >= s.queue {
		return false, nil
	}
	wait = make(chan struct{})
	s.waiters = append(s.waiters, wait)
	s.waiting.Store(int64(len(s.waiters)))
	s.armWiden()
	return false, wait
}

// leave takes wait out of the queue; false if it was granted a slot
// meanwhile (the caller then holds it).
func (s *slots) leave(wait chan struct{}) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(s.waiters, wait)
	if i < 0 {
		return false
	}
	s.waiters = slices.Delete(s.waiters, i, i+1)
	s.waiting.Store(int64(len(s.waiters)))
	return true
}

// running is how many compares hold a slot.
func (s *slots) running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse
}

// release frees a slot for the next in line.
func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inUse--
	s.grant()
}

// grant hands free slots to the oldest waiters. Under mu.
func (s *slots) grant() {
	for lim := s.limit(); s.inUse < lim && len(s.waiters) > 0; {
		close(s.waiters[0])
		s.waiters = slices.Delete(s.waiters, 0, 1)
		s.inUse++
	}
	s.waiting.Store(int64(len(s.waiters)))
	s.armWiden()
}

// armWiden makes sure that logins waiting while only the quiet period
// keeps the slots narrow are let in when it ends, even if no compare ends
// then. Under mu.
func (s *slots) armWiden() {
	if s.widen != nil || len(s.waiters) == 0 || s.inUse >= s.wide || s.urgent.Load() > 0 {
		return
	}
	d := time.Duration(int64(s.quiet) - (time.Now().UnixNano() - s.lastUrgent.Load()))
	s.widen = time.AfterFunc(max(d, 0), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.widen = nil
		s.grant()
	})
}

// quietSince reports whether no latency-sensitive request has been in
// flight since t.
func (s *slots) quietSince(t time.Time) bool {
	return s.urgent.Load() == 0 && s.lastUrgent.Load() < t.UnixNano()
}

// enter and exit bracket a latency-sensitive request.
func (s *slots) enter() { s.urgent.Add(1) }

func (s *slots) exit() {
	s.lastUrgent.Store(time.Now().UnixNano())
	if s.urgent.Add(-1) == 0 && s.waiting.Load() > 0 && s.narrow < s.wide {
		s.mu.Lock()
		s.armWiden()
		s.mu.Unlock()
	}
}

// acquire waits for a slot, in the place p kept for it if any: errBusy
// when the queue is full or none frees up within wait, a Timeout when ctx
// ends first. It reports whether it queued, and for how long.
func (s *slots) acquire(ctx context.Context, wait time.Duration, p *place) (waited time.Duration, queued bool, err error) {
	ok, ch := s.take(p)
	if ok {
		return 0, false, nil
	}
	if ch == nil {
		return 0, false, errBusy()
	}
	start := time.Now()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ch:
		return time.Since(start), true, nil
	case <-timer.C:
		err = errBusy()
	case <-ctx.Done():
		err = Timeout(nil)
	}
	if !s.leave(ch) {
		return time.Since(start), true, nil // granted as the wait ended: run checks ctx
	}
	return time.Since(start), true, err
}

// EnterUrgent and ExitUrgent bracket a latency-sensitive request (refresh,
// verify, health: anything but bcrypt work): while one is in flight, and
// for widenAfter after the last, bcrypt compares keep to the narrow slots.
// Each is an atomic add.
func (c *Core) EnterUrgent() { c.bcrypt.slots.enter() }

// ExitUrgent ends what EnterUrgent began.
func (c *Core) ExitUrgent() { c.bcrypt.slots.exit() }

// ShedLogin reports whether a login arriving now must be shed at once,
// the bcrypt slots taken and their queue full, and if so counts it as
// shed (authd_logins_total{result="shed"}): a door calls it before it
// reads the request, so that a flood of logins costs next to nothing,
// and answers Busy.
func (c *Core) ShedLogin() bool {
	if !c.bcrypt.slots.full() {
		return false
	}
	c.metrics.shed.Inc()
	return true
}

// ErrBusy is the answer to a login shed by ShedLogin.
func ErrBusy() *Error { return errBusy() }
