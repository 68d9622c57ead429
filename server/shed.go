package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"authd/identity"
)

// The login shed path. A login that finds the bcrypt slots taken and
// their queue full is answered before anything else is done for it:
// before routing, before its body is read or decoded, before its client's
// throttle or its user is looked up, and before the request log and the
// audit log (whose buffer a flood would otherwise fill, dropping the
// events that matter). The answer is rendered once; the shed is counted
// in authd_logins_total{result="shed"} and in the HTTP series, and logged
// at most once per shedLogEvery with the number shed since the last line.
// Under a hostile flood (clients that ignore Retry-After) this is nearly
// all the work authd does for the flood, so it must cost next to nothing:
// the rest of the CPU is refresh's and verify's.
//
// Cheap is not enough against a client on the same machine (or paying for
// its own CPU by the request): a client that posts again as soon as it is
// answered takes, together with authd's answers, as much CPU as it is
// given — the cheaper the answer, the more it posts. So a login shed
// from a client address that was shed less than the hold (Retry-After,
// 1 s) ago is held for the hold before its answer: a polite client, which
// waits out Retry-After, is never held; one that ignores it gets one
// answer a second per connection. A hold costs a timer and a parked
// goroutine; at most maxHeld are held at once (beyond that, answered at
// once), and the addresses are remembered in a bounded map.

// shedLogEvery is how often a run of shed logins is logged.
const shedLogEvery = 10 * time.Second

// loginPath is the route the shed path answers, for POST only.
const loginPath = "/rpc/login"

// metricsPath is where Prometheus scrapes, on the API listener unless
// the operator listener takes it (Config.MetricsApart).
const metricsPath = "/metrics"

// shedder answers logins shed at the door.
type shedder struct {
	body   []byte
	header http.Header // copied into each answer: the values are shared, never changed
	// page and pageHeader answer a browser's plain form post (a sign-in
	// without JavaScript) in words, as form.go answers its refusals.
	page       []byte
	pageHeader http.Header

	requests prometheus.Counter
	latency  prometheus.Observer
	held     prometheus.Counter
	now      func() time.Time
	log      *slog.Logger
	clientIP echo.IPExtractor
	// pending is how many were shed since the last line; lastLog is
	// when that line was written (UnixNano), 0 for never.
	pending atomic.Int64
	lastLog atomic.Int64
	holds   *shedHolds
}

// maxHeld bounds the shed answers held at once, and maxHeldAddrs the
// client addresses remembered for holding.
const (
	maxHeld      = 4096
	maxHeldAddrs = 16384
)

// shedHolds remembers when each client address was last shed.
type shedHolds struct {
	hold time.Duration
	held atomic.Int64 // answers being held now

	mu   sync.Mutex
	last map[string]time.Time
}

// newShedHolds holds for hold; nil (holding nothing) for hold <= 0.
func newShedHolds(hold time.Duration) *shedHolds {
	if hold <= 0 {
		return nil
	}
	return &shedHolds{hold: hold, last: make(map[string]time.Time)}
}

// shed records that addr was shed at now, and reports whether the answer
// must be held: addr was answered a refusal less than the hold ago, and
// fewer than maxHeld answers are held.
func (h *shedHolds) shed(addr string, now time.Time) bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	last, seen := h.last[addr]
	if !seen && len(h.last) >= maxHeldAddrs {
		// Forget the addresses not shed within the hold; if that frees
		// too little (a flood from that many addresses), forget them all.
		for a, t := range h.last {
			if now.Sub(t) >= h.hold {
				delete(h.last, a)
			}
		}
		if len(h.last) >= maxHeldAddrs/2 {
			clear(h.last)
		}
	}
	hold := seen && now.Sub(last) < h.hold && h.held.Load() < maxHeld
	if hold {
		now = now.Add(h.hold) // when it is answered: Retry-After runs from there
	}
	h.last[addr] = now
	h.mu.Unlock()
	return hold
}

// wait holds an answer for the hold, or until the client is gone
// (false: nobody is left to answer).
func (h *shedHolds) wait(r *http.Request) bool {
	h.held.Add(1)
	defer h.held.Add(-1)
	t := time.NewTimer(h.hold)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func newShedder(m *metrics, now func() time.Time, log *slog.Logger, clientIP echo.IPExtractor) *shedder {
	e := fromIdentity(identity.ErrBusy())
	b, _ := json.Marshal(body{Code: e.Code, Details: e.Details, Hint: e.Hint, Message: e.Message})
	h := http.Header{
		"Content-Type":   {jsonType},
		"Cache-Control":  {"no-store"},
		"Content-Length": {strconv.Itoa(len(b))},
	}
	for k, v := range e.Header {
		h[k] = v
	}
	var page bytes.Buffer
	if err := formTemplate.Execute(&page, formPage{
		Title: string(formSignIn) + " failed", Message: e.Message, Code: e.Code, Back: "/",
	}); err != nil {
		panic(err) // a constant page: only a broken template fails
	}
	ph := http.Header{
		"Content-Type":            {"text/html; charset=UTF-8"},
		"Cache-Control":           {"no-store"},
		"Content-Length":          {strconv.Itoa(page.Len())},
		"Content-Security-Policy": {formPageCSP},
		"X-Content-Type-Options":  {"nosniff"},
		"Referrer-Policy":         {"same-origin"},
	}
	for k, v := range e.Header {
		ph[k] = v
	}
	return &shedder{
		body: b, header: h, page: page.Bytes(), pageHeader: ph, now: now, log: log, clientIP: clientIP,
		requests: m.requests.WithLabelValues(loginPath, http.MethodPost, strconv.Itoa(e.Status)),
		latency:  m.latency.WithLabelValues(loginPath),
		held:     m.shedHeld,
	}
}

// door is h behind the shed path: a POST /rpc/login that ShedLogin
// refuses is answered here, everything else passes to h.
func (s *Server) door(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == loginPath && s.ident.ShedLogin() {
			s.shed.answer(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// answer writes the pre-rendered 503, counts it and maybe logs it; held
// first if its client was shed lately (shedHolds).
func (d *shedder) answer(w http.ResponseWriter, r *http.Request) {
	start := d.now()
	if d.holds.shed(d.clientIP(r), start) {
		d.held.Inc()
		if !d.holds.wait(r) {
			return // the client left: nobody to answer
		}
	}
	body, header := d.body, d.header
	if formNavigation(r.Header) {
		body, header = d.page, d.pageHeader
	}
	h := w.Header()
	for k, v := range header {
		h[k] = v
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(body)
	d.requests.Inc()
	d.latency.Observe(d.now().Sub(start).Seconds())
	d.sampleLog(r, start)
}

// sampleLog logs the first shed login, and then one line per shedLogEvery
// at most while logins keep being shed, with how many were shed since the
// line before: a flood of a million makes a line every ten seconds, not a
// million lines.
func (d *shedder) sampleLog(r *http.Request, now time.Time) {
	d.pending.Add(1)
	last := d.lastLog.Load()
	if last != 0 && now.UnixNano()-last < int64(shedLogEvery) {
		return
	}
	if !d.lastLog.CompareAndSwap(last, now.UnixNano()) {
		return // another shed is writing the line
	}
	// The client of the line's own request: one of many, an example.
	d.log.LogAttrs(r.Context(), slog.LevelWarn, "logins shed: the bcrypt queue is full",
		slog.Int64("shed", d.pending.Swap(0)), slog.String("remote_ip", d.clientIP(r)))
}

// urgent marks every request but those that do bcrypt work as
// latency-sensitive while it runs, so that the bcrypt slots narrow to
// leave it a CPU (identity.Core.EnterUrgent) — but a scrape of /metrics:
// a scrape waits for nobody, and it must not change what it measures.
// Marked, each scrape (every 15 s from a Prometheus) narrowed the slots
// for widenAfter, so logins alone lost a CPU for a tenth of a second, and
// authd-bench's own read of the counters before its login row left one
// CPU idle for the row's first 100 ms.
func (s *Server) urgent(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if bcryptRoutes[c.Path()] || c.Path() == metricsPath {
			return next(c)
		}
		s.ident.EnterUrgent()
		defer s.ident.ExitUrgent()
		return next(c)
	}
}

// bcryptRoutes are the routes whose work is a bcrypt compare or hash.
var bcryptRoutes = map[string]bool{
	loginPath: true, "/rpc/signup": true, "/rpc/change_password": true, "/rpc/reset_password": true,
}
