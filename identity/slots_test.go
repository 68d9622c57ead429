package identity

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// held is a compare that runs until released.
type held struct {
	started, release chan struct{}
	done             chan error
}

// hold starts a login in g whose compare runs until released.
func hold(g *bcryptGate) *held {
	h := &held{started: make(chan struct{}), release: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		h.done <- g.run(context.Background(), func() { close(h.started); <-h.release })
	}()
	return h
}

// running reports whether h's compare has started, once every goroutine
// of the bubble is blocked.
func (h *held) running() bool {
	synctest.Wait()
	select {
	case <-h.started:
		return true
	default:
		return false
	}
}

func (h *held) finish(t *testing.T) {
	t.Helper()
	close(h.release)
	if err := <-h.done; err != nil {
		t.Fatalf("held compare: %v", err)
	}
	synctest.Wait()
}

// TestSlotsWidenWhileNothingUrgent: with no latency-sensitive request
// about, compares take every slot (wide); while one is in flight, and
// for widenAfter after it ends, new compares keep to the narrow slots and
// the rest wait their turn — the ones running are not stopped. Time is
// synctest's: no timing is asserted, only what runs when.
func TestSlotsWidenWhileNothingUrgent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newBcryptGate(1, 2, 10, time.Hour, 0, newMetrics(prometheus.NewRegistry(), time.Now))
		s := g.slots

		// Logins alone: two compares at once.
		a, b := hold(g), hold(g)
		if !a.running() || !b.running() {
			t.Fatal("with nothing urgent, two compares did not run at once on two wide slots")
		}

		// A refresh arrives: the running compares go on, but when one
		// ends no new compare takes its slot beyond the narrow one.
		s.enter()
		c := hold(g)
		if c.running() {
			t.Fatal("a compare started beyond the wide slots")
		}
		a.finish(t)
		if c.running() {
			t.Fatal("while a refresh is in flight, a compare took a second slot")
		}
		b.finish(t)
		if !c.running() {
			t.Fatal("the narrow slot freed up, and the waiting compare did not start")
		}

		// Still urgent: a second login waits.
		d := hold(g)
		if d.running() {
			t.Fatal("while a refresh is in flight, a second compare ran")
		}
		// The refresh ends: the slots stay narrow for widenAfter...
		s.exit()
		time.Sleep(widenAfter - time.Nanosecond)
		if d.running() {
			t.Fatalf("compares widened before %s without a refresh", widenAfter)
		}
		// ...and then widen without waiting for a compare to end.
		time.Sleep(time.Nanosecond)
		if !d.running() {
			t.Fatalf("%s after the last refresh, the waiting compare did not take the wide slot", widenAfter)
		}
		if n := s.running(); n != 2 {
			t.Errorf("%d compares running, want 2", n)
		}

		// Narrow again as soon as a refresh arrives: a login that comes
		// now waits for the narrow slot even when a wide one frees up.
		s.enter()
		e := hold(g)
		c.finish(t)
		if e.running() {
			t.Fatal("with a refresh in flight, a compare took the freed wide slot")
		}
		d.finish(t)
		if !e.running() {
			t.Fatal("the narrow slot freed up, and the waiting compare did not start")
		}
		s.exit()
		e.finish(t)
		if n := int64(s.running()) + s.waiting.Load(); n != 0 {
			t.Errorf("%d compares still counted", n)
		}
		outlastWorkers() // the gate's idle threads end
	})
}

// TestShedLoginWhenFull: ShedLogin sheds only when every narrow slot is
// taken and the queue is full, and counts what it sheds.
func TestShedLoginWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMetrics(prometheus.NewRegistry(), time.Now)
		c := &Core{bcrypt: newBcryptGate(1, 1, 1, time.Hour, 0, m), metrics: m}
		if c.ShedLogin() {
			t.Fatal("shed with every slot free")
		}
		a := hold(c.bcrypt)
		a.running()
		if c.ShedLogin() {
			t.Fatal("shed with a place in the queue")
		}
		b := hold(c.bcrypt)
		synctest.Wait()
		for range 3 {
			if !c.ShedLogin() {
				t.Fatal("not shed with the slot taken and the queue full")
			}
		}
		if got := counterValue(t, m.shed); got != 3 {
			t.Errorf("authd_logins_total{result=\"shed\"} = %v, want 3", got)
		}
		a.finish(t)
		if c.ShedLogin() {
			t.Fatal("shed with the queue emptied")
		}
		b.finish(t)
		outlastWorkers() // the gate's idle threads end
	})
}

// TestAdmitKeepsPlaces: admit lets in as many logins as the gate has
// places for (free narrow slots and queue places), keeps a place for each
// until it reaches the gate or gives it back, and ShedLogin counts the
// kept places as taken.
func TestAdmitKeepsPlaces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMetrics(prometheus.NewRegistry(), time.Now)
		c := &Core{bcrypt: newBcryptGate(1, 1, 2, time.Hour, 0, m), metrics: m}
		s := c.bcrypt.slots
		var kept []*place
		for range 3 { // one slot and two queue places
			p, ok := s.admit()
			if !ok {
				t.Fatalf("refused with %d of 3 places kept", len(kept))
			}
			kept = append(kept, p)
		}
		if _, ok := s.admit(); ok {
			t.Fatal("let in with every place kept")
		}
		if !c.ShedLogin() {
			t.Fatal("the door does not shed with every place kept")
		}
		// One gives up before the gate (its database work failed, say);
		// giving back twice frees one place.
		kept[2].give()
		kept[2].give()
		p, ok := s.admit()
		if !ok {
			t.Fatal("refused with a place given back")
		}
		kept[2] = p
		if _, ok := s.admit(); ok {
			t.Fatal("a place given back twice was counted twice")
		}
		// At the gate the first takes the slot and the others queue, each
		// in its kept place; nobody else gets in meanwhile.
		first := make(chan error, 1)
		release := make(chan struct{})
		go func() { first <- c.bcrypt.runIn(context.Background(), kept[0], func() { <-release }) }()
		synctest.Wait()
		queued := make(chan error, 2)
		for _, p := range kept[1:] {
			go func() { queued <- c.bcrypt.runIn(context.Background(), p, func() {}) }()
		}
		synctest.Wait()
		if got := s.waiting.Load(); got != 2 {
			t.Fatalf("%d waiting, want the 2 let in", got)
		}
		if n := s.entering.Load(); n != 0 {
			t.Errorf("%d places kept for logins already at the gate", n)
		}
		if _, ok := s.admit(); ok {
			t.Fatal("let in with the slot taken and the queue full")
		}
		close(release)
		for _, ch := range []chan error{first, queued, queued} {
			if err := <-ch; err != nil {
				t.Fatalf("a login let in: %v", err)
			}
		}
		if _, ok := s.admit(); !ok {
			t.Fatal("refused with the gate empty")
		}
		outlastWorkers() // the gate's idle threads end
	})
}

// TestPriorityAdapts: compares run at the configured nice value until one
// is starved (less than half its time on a CPU), then at 0 until one at 0
// runs freely; a compare too short to judge changes nothing.
func TestPriorityAdapts(t *testing.T) {
	p := newPriority(10)
	steps := []struct {
		nice      int
		wall, cpu time.Duration
		want      int
	}{
		{10, 70 * time.Millisecond, 68 * time.Millisecond, 10},  // runs freely
		{10, 700 * time.Millisecond, 70 * time.Millisecond, 0},  // a tenth of a CPU: starved
		{0, 2 * time.Millisecond, 2 * time.Millisecond, 0},      // too short to judge
		{0, 105 * time.Millisecond, 70 * time.Millisecond, 0},   // two thirds: neighbours still there
		{0, 100 * time.Millisecond, -1, 0},                      // CPU unknown
		{0, 72 * time.Millisecond, 70 * time.Millisecond, 10},   // free again
		{10, 140 * time.Millisecond, 71 * time.Millisecond, 10}, // half: not starved
	}
	for i, s := range steps {
		p.observe(s.nice, s.wall, s.cpu)
		if got := p.nice(); got != s.want {
			t.Errorf("step %d (nice %d, %s of CPU in %s): next nice %d, want %d", i, s.nice, s.cpu, s.wall, got, s.want)
		}
	}
	// Configured at 0, nothing changes.
	p = newPriority(0)
	p.observe(0, time.Second, time.Millisecond)
	if p.nice() != 0 {
		t.Errorf("nice 0 configured: got %d", p.nice())
	}
}

// TestBcryptSlotRange: one slot per CPU while logins are alone, one CPU
// fewer (at least one) while latency-sensitive requests are about;
// AUTHD_BCRYPT_SLOTS fixes both.
func TestBcryptSlotRange(t *testing.T) {
	for _, tt := range []struct{ cpus, fixed, narrow, wide int }{
		{1, 0, 1, 1}, {2, 0, 1, 2}, {8, 0, 7, 8}, {2, 2, 2, 2}, {8, 1, 1, 1},
	} {
		if n, w := BcryptSlotRange(tt.cpus, tt.fixed); n != tt.narrow || w != tt.wide {
			t.Errorf("BcryptSlotRange(%d, %d) = %d, %d; want %d, %d", tt.cpus, tt.fixed, n, w, tt.narrow, tt.wide)
		}
	}
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestQuietSince: a compare is judged for starvation only if no
// latency-sensitive request was in flight while it ran.
func TestQuietSince(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSlots(1, 2, 1, widenAfter)
		start := time.Now()
		time.Sleep(time.Millisecond)
		if !s.quietSince(start) {
			t.Error("nothing urgent ever: not quiet")
		}
		s.enter()
		if s.quietSince(start) {
			t.Error("a refresh in flight: quiet")
		}
		time.Sleep(time.Millisecond)
		s.exit()
		if s.quietSince(start) {
			t.Error("a refresh ended after the compare began: quiet")
		}
		time.Sleep(time.Millisecond)
		if !s.quietSince(time.Now()) {
			t.Error("the refresh ended before: not quiet")
		}
	})
}

// TestSlotsNowGauge: authd_bcrypt_slots_now says which slots apply: the
// wide ones with nothing latency-sensitive about, the narrow ones while a
// request is in flight and for widenAfter after it.
func TestSlotsNowGauge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		g := newBcryptGate(1, 2, 10, time.Hour, 0, newMetrics(reg, time.Now))
		now := func() float64 {
			t.Helper()
			fams, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fams {
				if f.GetName() == "authd_bcrypt_slots_now" {
					return f.GetMetric()[0].GetGauge().GetValue()
				}
			}
			t.Fatal("no authd_bcrypt_slots_now")
			return 0
		}
		if n := now(); n != 2 {
			t.Errorf("nothing urgent: %v slots now, want the wide 2", n)
		}
		g.slots.enter()
		if n := now(); n != 1 {
			t.Errorf("a refresh in flight: %v slots now, want the narrow 1", n)
		}
		g.slots.exit()
		time.Sleep(widenAfter - time.Nanosecond)
		if n := now(); n != 1 {
			t.Errorf("just under %s after the refresh: %v slots now, want 1", widenAfter, n)
		}
		time.Sleep(time.Nanosecond)
		if n := now(); n != 2 {
			t.Errorf("%s after the refresh: %v slots now, want 2", widenAfter, n)
		}
	})
}

// TestNoLoginCountedTwice: the door's count of the gate's places (full,
// admit) adds up what logins move between — kept places (entering), the
// queue, the slots — and must never count a login twice, which would
// shed a login that had a place (read without the gate's lock, one on its
// way from its kept place into a slot was counted in both). Here two
// logins go round and round a gate with three places (one slot, a queue
// of two), so at least one place is free at every moment, and the door
// must never report the gate full.
func TestNoLoginCountedTwice(t *testing.T) {
	s := newSlots(1, 1, 2, time.Hour)
	const rounds = 50000
	var wg, door sync.WaitGroup
	stop := make(chan struct{})
	var sawFull atomic.Int64
	door.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if s.full() {
				sawFull.Add(1)
			}
		}
	})
	shedAtGate := make(chan int, 2)
	for range 2 {
		wg.Go(func() {
			for i := range rounds {
				p, ok := s.admit()
				if !ok {
					shedAtGate <- i
					return
				}
				ok, wait := s.take(p)
				switch {
				case wait != nil:
					<-wait
				case !ok:
					shedAtGate <- i
					return
				}
				s.release()
			}
		})
	}
	wg.Wait()
	close(stop)
	door.Wait()
	close(shedAtGate)
	for i := range shedAtGate {
		t.Errorf("a login was refused in round %d with a place free", i)
	}
	if n := sawFull.Load(); n > 0 {
		t.Errorf("the door saw the gate full %d times with at most 2 of its 3 places taken", n)
	}
}
