package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"authd/cmd/internal/loadtest"
)

// The storm: logins sent open-loop at -storm-factor × the bcrypt ceiling,
// so that the excess must be shed with 503 within AUTHD_LOGIN_QUEUE_WAIT,
// while refresh, verify (one Bearer token, as a gateway presents it) and
// GET /healthz are paced, beside the same paced clients in a quiet window.

// stormWindow is one window: the paced clients, and in the storm the flood.
type stormWindow struct {
	name    string
	elapsed time.Duration
	lat     [6]loadtest.Latencies // refresh, verify, healthz; logins answered 204, 503, anything else
	dropped atomic.Int64          // slots not sent: too many in flight, or no free session
}

type stormResult struct {
	ceilingRate, bcryptMS, loginRate float64 // logins/s; one compare's CPU; offered/s
	windows                          [2]*stormWindow
}

func (w *stormWindow) errors() (n int64) {
	for i := range w.lat {
		_, e, _ := w.lat[i].Get()
		n += e
	}
	return n
}

func (rn *runner) storm(ctx context.Context, addr string) error {
	o, h, ceil := rn.o, rn.h, rn.rep.bcrypt
	if ceil.rate() <= 0 {
		return errors.New("storm: no bcrypt ceiling measured")
	}
	// The ceiling from bcrypt's CPU cost, which other load does not lower
	// as it lowers the measured rate.
	lat, _, _ := ceil.lat.Get()
	sr := &stormResult{ceilingRate: ceil.rate(), bcryptMS: float64(loadtest.Percentile(lat, 0.5)) / 1e6}
	if ceil.cpu[2] > 0 {
		sr.bcryptMS = float64(ceil.cpu[2]) / float64(ceil.n()) / 1e6
		sr.ceilingRate = max(sr.ceilingRate, float64(runtime.GOMAXPROCS(0))/(sr.bcryptMS/1000))
	}
	sr.loginRate = o.stormFactor * sr.ceilingRate
	rn.rep.storm = sr

	// The flood's hundreds of connections are not the measured clients'.
	flood, meas := loadtest.NewClient(addr, 512), loadtest.NewClient(addr, 64)
	defer flood.Close()
	defer meas.Close()
	sessions := make(chan string, 64) // for paced refreshes, each used by one at a time
	for i := range cap(sessions) {
		s, err := meas.Login(ctx, h.Users[i%len(h.Users)])
		if err != nil {
			return fmt.Errorf("storm: log in: %w", err)
		}
		sessions <- s.Refresh
	}
	gets := rn.gets(rn.access)
	verify, health := gets[2], gets[0] // verify-jwt, bare
	for range 8 {                      // warm the measuring connections and the verified-token cache
		if err := verify.do(ctx, meas); err != nil {
			return fmt.Errorf("storm: warm-up: %w", err)
		}
	}
	h.Logf("storm: quiet window, then a login flood at %.0f/s (%g× the bcrypt ceiling of %.1f/s), %s each", sr.loginRate, o.stormFactor, sr.ceilingRate, o.duration)
	for i, name := range []string{"quiet", "storm"} {
		w := &stormWindow{name: name}
		sr.windows[i] = w
		start := time.Now().Add(20 * time.Millisecond)
		var wg sync.WaitGroup
		pace := func(rate float64, inflight int, fn func(context.Context)) {
			wg.Go(func() {
				w.dropped.Add(loadtest.Pacer{Rate: rate, MaxInflight: inflight}.Run(ctx, start, o.duration, fn))
			})
		}
		pace(o.stormRates[0], 256, func(ctx context.Context) {
			var tok string
			select {
			case tok = <-sessions:
			default:
				w.dropped.Add(1)
				return
			}
			t0 := time.Now()
			s, err := meas.Refresh(ctx, tok)
			w.lat[0].Add(time.Since(t0), err)
			if err != nil {
				if s, err = meas.Login(ctx, h.Users[0]); err != nil {
					return // the pool shrinks by one; counted above
				}
			}
			sessions <- s.Refresh
		})
		pace(o.stormRates[1], 256, func(ctx context.Context) { w.lat[1].Timed(func() error { return verify.do(ctx, meas) }) })
		pace(o.stormRates[2], 256, func(ctx context.Context) { w.lat[2].Timed(func() error { return health.do(ctx, meas) }) })
		var next atomic.Int64
		if name == "storm" {
			pace(sr.loginRate, 4096, func(ctx context.Context) {
				req := loadtest.LoginRequest(h.Users[int(next.Add(1))%len(h.Users)])
				req.Want = 0
				t0 := time.Now()
				status, hdr, _, err := flood.Do(ctx, req)
				d := time.Since(t0)
				switch {
				case err == nil && status == http.StatusNoContent:
					_, err = loadtest.SessionCookies(hdr, "login")
					w.lat[3].Add(d, err)
				case err == nil && status == http.StatusServiceUnavailable && hdr.Get("Retry-After") != "":
					w.lat[4].Add(d, nil)
				default:
					w.lat[5].Add(d, errors.Join(err, fmt.Errorf("POST /rpc/login: status %d", status)))
				}
			})
		}
		wg.Wait()
		w.elapsed = time.Since(start)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("storm: %w", err)
		}
	}
	return nil
}
