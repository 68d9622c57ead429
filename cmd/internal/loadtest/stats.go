package loadtest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Percentile is the nearest-rank p-quantile of lat (p in [0, 1]; 1 is the
// maximum), 0 for none. lat is left unsorted: callers keep appending to
// it and take several percentiles of it.
func Percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// MS writes d in milliseconds with two decimals, the unit of every
// latency in the reports, so that columns compare at a glance.
func MS(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// maxSamples is how many distinct error messages Latencies keeps: enough
// to tell what went wrong, few enough to print.
const maxSamples = 5

// Latencies records how long requests took and whether they failed, from
// many goroutines at once; the zero value is ready. A report takes
// percentiles of the durations afterwards, and shows a few of the
// errors.
type Latencies struct {
	mu      sync.Mutex
	lat     []time.Duration
	errs    int64
	samples []string
}

// Add records one request of duration d; a non-nil err counts it as
// failed and keeps its message if it is new and there is room.
func (l *Latencies) Add(d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lat = append(l.lat, d)
	if err != nil {
		l.errs++
		if msg := err.Error(); len(l.samples) < maxSamples && !slices.Contains(l.samples, msg) {
			l.samples = append(l.samples, msg)
		}
	}
}

// Durations is every duration recorded (failed requests too), in the
// order added. The slice is the recorder's own: read it once the
// senders are done.
func (l *Latencies) Durations() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lat
}

// Len is how many requests were recorded.
func (l *Latencies) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lat)
}

// Errors is how many of them failed.
func (l *Latencies) Errors() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs
}

// Samples are the first few distinct error messages.
func (l *Latencies) Samples() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.samples)
}

// Take returns the durations and the error count recorded so far and
// starts over, while senders go on adding: a long run reports interval
// by interval. The error samples are kept, as they describe the run.
func (l *Latencies) Take() ([]time.Duration, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lat, errs := l.lat, l.errs
	l.lat, l.errs = nil, 0
	return lat, errs
}

// Pacer sends requests at a fixed rate, open loop: each on its own
// goroutine when its slot comes, whatever the earlier ones are doing, as
// independent clients would. A closed loop (send, wait, send) slows down
// with the server and so hides its latency under load.
type Pacer struct {
	// Rate is the calls per second; none are made unless it is positive.
	Rate float64
	// MaxInflight bounds the calls running at once; a slot that finds
	// that many is dropped and counted, not queued.
	MaxInflight int
	// MaxLag, when positive, is how far the schedule may fall behind the
	// clock (the sender starved of CPU) before the missed slots are
	// dropped; zero sends them at once to catch up, keeping the count.
	MaxLag time.Duration
}

// Run calls fn on the schedule from start until start+d or, for d <= 0,
// until ctx ends; it returns when every call has returned, with the
// number of slots dropped because MaxInflight calls were running.
func (p Pacer) Run(ctx context.Context, start time.Time, d time.Duration, fn func(context.Context)) (dropped int64) {
	if p.Rate <= 0 {
		return 0
	}
	every := time.Duration(float64(time.Second) / p.Rate)
	end := start.Add(d)
	sem := make(chan struct{}, max(p.MaxInflight, 1))
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for next := start; d <= 0 || next.Before(end); {
		if w := time.Until(next); w > 0 {
			timer.Reset(w)
			select {
			case <-ctx.Done():
				return dropped
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			return dropped
		}
		select {
		case sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				fn(ctx)
			}()
		default:
			dropped++
		}
		next = next.Add(every)
		if now := time.Now(); p.MaxLag > 0 && next.Before(now.Add(-p.MaxLag)) {
			next = now // far behind: drop the missed slots
		}
	}
	return dropped
}
