package loadtest

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Percentile is the nearest-rank p-quantile of lat (1 is the maximum), 0
// for none. lat is left unsorted.
func Percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[max(int(math.Ceil(p*float64(len(s))))-1, 0)]
}

// MS writes d in milliseconds, the unit of every latency in the reports.
func MS(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// PMS is MS of lat's p-quantile.
func PMS(lat []time.Duration, p float64) string { return MS(Percentile(lat, p)) }

// Table writes the head of a Markdown table (the first column text, the
// others numbers) and returns the function that writes a row.
func Table(w io.Writer, head ...string) func(cells ...any) {
	fmt.Fprintf(w, "| %s |\n|---|%s\n", strings.Join(head, " | "), strings.Repeat("---:|", len(head)-1))
	return func(cells ...any) {
		s := make([]string, len(cells))
		for i, c := range cells {
			s[i] = fmt.Sprint(c)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(s, " | "))
	}
}

// Latencies records requests' durations and failures from many
// goroutines; the zero value is ready.
type Latencies struct {
	mu      sync.Mutex
	lat     []time.Duration
	errs    int64
	samples []string // the first few distinct error messages, for the whole run
}

// Add records a request; a non-nil err counts as a failure and keeps its
// message if new and there is room.
func (l *Latencies) Add(d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lat = append(l.lat, d)
	if err != nil {
		l.errs++
		if msg := err.Error(); len(l.samples) < 5 && !slices.Contains(l.samples, msg) {
			l.samples = append(l.samples, msg)
		}
	}
}

// Timed records how long f takes and whether it fails.
func (l *Latencies) Timed(f func() error) {
	t0 := time.Now()
	err := f()
	l.Add(time.Since(t0), err)
}

// Get is every duration recorded, failures too, the failures and the
// error samples; read it once the senders are done.
func (l *Latencies) Get() ([]time.Duration, int64, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lat, l.errs, slices.Clone(l.samples)
}

// Take returns what was recorded so far and starts over (keeping the
// error samples, which describe the run), while senders go on adding.
func (l *Latencies) Take() ([]time.Duration, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lat, errs := l.lat, l.errs
	l.lat, l.errs = nil, 0
	return lat, errs
}

// Pacer sends requests open loop, each on its own goroutine when its slot
// comes, as independent clients would: a closed loop slows down with the
// server and so hides its latency under load.
type Pacer struct {
	Rate        float64 // calls per second; none unless positive
	MaxInflight int     // a slot that finds this many running is dropped
	// MaxLag, if positive, is how far the schedule may fall behind the
	// clock (the sender starved of CPU) before missed slots are dropped
	// rather than sent at once.
	MaxLag time.Duration
}

// Run calls fn on the schedule from start until start+d (for d <= 0,
// until ctx ends) and returns, once every call has, the slots dropped.
func (p Pacer) Run(ctx context.Context, start time.Time, d time.Duration, fn func(context.Context)) (dropped int64) {
	if p.Rate <= 0 {
		return 0
	}
	every, end := time.Duration(float64(time.Second)/p.Rate), start.Add(d)
	sem := make(chan struct{}, max(p.MaxInflight, 1))
	var wg sync.WaitGroup
	defer wg.Wait()
	for next := start; d <= 0 || next.Before(end); next = next.Add(every) {
		if w := time.Until(next); w > 0 {
			t := time.NewTimer(w)
			select {
			case <-ctx.Done():
				t.Stop()
				return dropped
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return dropped
		}
		select {
		case sem <- struct{}{}:
			wg.Go(func() {
				defer func() { <-sem }()
				fn(ctx)
			})
		default:
			dropped++
		}
		if now := time.Now(); p.MaxLag > 0 && next.Add(every).Before(now.Add(-p.MaxLag)) {
			next = now.Add(-every) // far behind: drop the missed slots
		}
	}
	return dropped
}
