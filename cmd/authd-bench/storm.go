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
	name          string
	elapsed       time.Duration
	paced         [3]loadtest.Latencies // refresh, verify, healthz
	ok, shed, bad loadtest.Latencies    // logins by answer: 204, 503, anything else
	dropped       [4]int64              // slots not sent, too many in flight: paced, then logins
}

type stormResult struct {
	ceilingRate, bcryptMS, loginRate float64 // logins/s; one compare's CPU; offered/s
	quiet, storm                     *stormWindow
}

func (w *stormWindow) errors() (n int64) {
	for _, l := range []*loadtest.Latencies{&w.paced[0], &w.paced[1], &w.paced[2], &w.bad} {
		_, e, _ := l.Get()
		n += e
	}
	return n
}

// sessionPool logs in n sessions for paced refreshes.
func sessionPool(ctx context.Context, c *loadtest.Client, users []string, n int) (chan string, error) {
	sessions := make(chan string, n)
	for i := range n {
		s, err := c.Login(ctx, users[i%len(users)])
		if err != nil {
			return nil, fmt.Errorf("log in: %w", err)
		}
		sessions <- s.Refresh
	}
	return sessions, nil
}

// pacedRefresh refreshes a free session of the pool into lat (a slot that
// finds none is dropped); a failed refresh is replaced by a login.
func pacedRefresh(c *loadtest.Client, user string, sessions chan string, lat *loadtest.Latencies, dropped *atomic.Int64) func(context.Context) {
	return func(ctx context.Context) {
		var tok string
		select {
		case tok = <-sessions:
		default:
			dropped.Add(1)
			return
		}
		t0 := time.Now()
		s, err := c.Refresh(ctx, tok)
		lat.Add(time.Since(t0), err)
		if err != nil {
			if s, err = c.Login(ctx, user); err != nil {
				return // the pool shrinks by one; counted above
			}
		}
		sessions <- s.Refresh
	}
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
	if ceil.cpu.self > 0 {
		sr.bcryptMS = float64(ceil.cpu.self) / float64(ceil.n()) / 1e6
		sr.ceilingRate = max(sr.ceilingRate, float64(runtime.GOMAXPROCS(0))/(sr.bcryptMS/1000))
	}
	sr.loginRate = o.stormFactor * sr.ceilingRate
	rn.rep.storm = sr

	// The flood's hundreds of connections are not the measured clients'.
	flood, meas := loadtest.NewClient(addr, 512), loadtest.NewClient(addr, 64)
	defer flood.Close()
	defer meas.Close()
	sessions, err := sessionPool(ctx, meas, h.Users, 64)
	if err != nil {
		return fmt.Errorf("storm: %w", err)
	}
	gets := rn.gets(rn.access)
	verify, health := gets[2], gets[0] // verify-jwt, bare
	for range 8 {                      // warm the measuring connections and the verified-token cache
		if err := verify.do(ctx, meas); err != nil {
			return fmt.Errorf("storm: warm-up: %w", err)
		}
	}
	window := func(name string, floodOn bool) (*stormWindow, error) {
		w := &stormWindow{name: name}
		start := time.Now().Add(20 * time.Millisecond)
		var wg sync.WaitGroup
		pace := func(i int, rate float64, inflight int, fn func(context.Context)) {
			wg.Go(func() {
				w.dropped[i] += loadtest.Pacer{Rate: rate, MaxInflight: inflight}.Run(ctx, start, o.duration, fn)
			})
		}
		var noSession, next atomic.Int64
		pace(0, o.stormRates[0], 256, pacedRefresh(meas, h.Users[0], sessions, &w.paced[0], &noSession))
		pace(1, o.stormRates[1], 256, func(ctx context.Context) { w.paced[1].Timed(func() error { return verify.do(ctx, meas) }) })
		pace(2, o.stormRates[2], 256, func(ctx context.Context) { w.paced[2].Timed(func() error { return health.do(ctx, meas) }) })
		if floodOn {
			pace(3, sr.loginRate, 4096, func(ctx context.Context) {
				req := loadtest.LoginRequest(h.Users[int(next.Add(1))%len(h.Users)])
				req.Want = 0
				t0 := time.Now()
				status, hdr, _, err := flood.Do(ctx, req)
				d := time.Since(t0)
				switch {
				case err == nil && status == http.StatusNoContent:
					_, err = loadtest.SessionCookies(hdr, "login")
					w.ok.Add(d, err)
				case err == nil && status == http.StatusServiceUnavailable && hdr.Get("Retry-After") != "":
					w.shed.Add(d, nil)
				default:
					w.bad.Add(d, errors.Join(err, fmt.Errorf("POST /rpc/login: status %d", status)))
				}
			})
		}
		wg.Wait()
		w.elapsed = time.Since(start)
		w.dropped[0] += noSession.Load()
		return w, ctx.Err()
	}

	h.Logf("storm: quiet window, %s: refresh %g/s, verify %g/s, healthz %g/s", o.duration, o.stormRates[0], o.stormRates[1], o.stormRates[2])
	if sr.quiet, err = window("quiet", false); err != nil {
		return fmt.Errorf("storm: %w", err)
	}
	h.Logf("storm: login flood at %.0f/s (%g× the bcrypt ceiling of %.1f/s) for %s", sr.loginRate, o.stormFactor, sr.ceilingRate, o.duration)
	if sr.storm, err = window("storm", true); err != nil {
		return fmt.Errorf("storm: %w", err)
	}
	return nil
}
