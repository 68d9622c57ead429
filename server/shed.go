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
// A login from a client address that has used its share of logins
// (identity.Config.LoginsPerIP, whatever their outcome) is refused the
// same way, 429 with the wait in Retry-After: a flood from one address
// with a right password would otherwise keep a CPU busy with compares,
// one after another, for as long as it lasts. The address's count itself
// is taken by the password check, for every door; the door only looks.
//
// Cheap is not enough against a client on the same machine (or paying for
// its own CPU by the request): a client that posts again as soon as it is
// answered takes, together with authd's answers, as much CPU as it is
// given — the cheaper the answer, the more it posts. So a login shed (or
// throttled) from a client address that was refused at the door less
// than the hold (1 s) ago is held for the hold before its answer: a
// polite client, which waits out Retry-After, is never held; one that
// ignores it gets one answer a second per connection. A hold costs a
// timer and a parked goroutine; at most maxHeld are held at once (beyond
// that, answered at once), and the addresses are remembered in a bounded
// map.

// shedLogEvery is how often a run of the door's refusals is logged.
const shedLogEvery = 10 * time.Second

// loginPath is the route the shed path answers, for POST only.
const loginPath = "/rpc/login"

// metricsPath is where Prometheus scrapes, on the API listener unless
// the operator listener takes it (Config.MetricsApart).
const metricsPath = "/metrics"

// shedder answers the logins refused at the door: shed (the bcrypt queue
// is full) or throttled (their client address has used its share of
// logins, identity.Config.LoginsPerIP).
type shedder struct {
	busy, throttled *refusal

	latency  prometheus.Observer
	held     prometheus.Counter
	now      func() time.Time
	log      *slog.Logger
	clientIP echo.IPExtractor
	holds    *shedHolds
}

// refusal is one of the door's answers, rendered once: JSON, and a page
// in words for a browser's plain form post (a sign-in without
// JavaScript), as form.go answers its refusals. Retry-After is the
// answer's own.
type refusal struct {
	status     int
	body       []byte
	header     http.Header // copied into each answer: the values are shared, never changed
	page       []byte
	pageHeader http.Header

	requests prometheus.Counter
	// logMsg is the line a run of these refusals is logged with; pending
	// is how many were refused since the last line; lastLog is when that
	// line was written (UnixNano), 0 for never.
	logMsg  string
	count   string // the line's attribute with the number refused
	pending atomic.Int64
	lastLog atomic.Int64
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
	return &shedder{
		busy:      newRefusal(identity.ErrBusy(), m, "logins shed: the bcrypt queue is full", "shed"),
		throttled: newRefusal(identity.ErrTooManyLoginsFrom(), m, "logins refused: too many from one address", "refused"),
		now:       now, log: log, clientIP: clientIP,
		latency: m.latency.WithLabelValues(loginPath),
		held:    m.shedHeld,
	}
}

// newRefusal renders e's answer, for JSON and for a form's page.
func newRefusal(e *identity.Error, m *metrics, logMsg, count string) *refusal {
	ans := fromIdentity(e)
	b, _ := json.Marshal(body{Code: ans.Code, Details: ans.Details, Hint: ans.Hint, Message: ans.Message})
	h := http.Header{
		"Content-Type":   {jsonType},
		"Cache-Control":  {"no-store"},
		"Content-Length": {strconv.Itoa(len(b))},
	}
	var page bytes.Buffer
	if err := formTemplate.Execute(&page, formPage{
		Title: string(formSignIn) + " failed", Message: ans.Message, Code: ans.Code, Back: "/",
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
	for k, v := range ans.Header {
		if k != "Retry-After" {
			h[k], ph[k] = v, v
		}
	}
	return &refusal{
		status: ans.Status, body: b, header: h, page: page.Bytes(), pageHeader: ph,
		requests: m.requests.WithLabelValues(loginPath, http.MethodPost, strconv.Itoa(ans.Status)),
		logMsg:   logMsg, count: count,
	}
}

// door is h behind the shed path: a POST /rpc/login from an address past
// its share of logins (Core.ThrottleLogin), or that ShedLogin refuses, is
// answered here; everything else passes to h.
func (s *Server) door(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == loginPath {
			addr := s.shed.clientIP(r)
			if e := s.ident.ThrottleLogin(addr); e != nil {
				s.shed.answer(w, r, addr, s.shed.throttled, e.RetryAfter)
				return
			}
			if s.ident.ShedLogin() {
				s.shed.answer(w, r, addr, s.shed.busy, 1)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// answer writes the pre-rendered refusal a, counts it and maybe logs it;
// held first if its client addr was refused lately (shedHolds).
func (d *shedder) answer(w http.ResponseWriter, r *http.Request, addr string, a *refusal, retryAfter int) {
	start := d.now()
	if d.holds.shed(addr, start) {
		d.held.Inc()
		if !d.holds.wait(r) {
			return // the client left: nobody to answer
		}
	}
	body, header := a.body, a.header
	if formNavigation(r.Header) {
		body, header = a.page, a.pageHeader
	}
	h := w.Header()
	for k, v := range header {
		h[k] = v
	}
	h["Retry-After"] = []string{strconv.Itoa(retryAfter)}
	w.WriteHeader(a.status)
	_, _ = w.Write(body)
	a.requests.Inc()
	d.latency.Observe(d.now().Sub(start).Seconds())
	d.sampleLog(r, addr, a, start)
}

// sampleLog logs the first refusal of a kind, and then one line per
// shedLogEvery at most while they go on, with how many there were since
// the line before: a flood of a million makes a line every ten seconds,
// not a million lines.
func (d *shedder) sampleLog(r *http.Request, addr string, a *refusal, now time.Time) {
	a.pending.Add(1)
	last := a.lastLog.Load()
	if last != 0 && now.UnixNano()-last < int64(shedLogEvery) {
		return
	}
	if !a.lastLog.CompareAndSwap(last, now.UnixNano()) {
		return // another refusal is writing the line
	}
	// The client of the line's own request: one of many, an example.
	d.log.LogAttrs(r.Context(), slog.LevelWarn, a.logMsg,
		slog.Int64(a.count, a.pending.Swap(0)), slog.String("remote_ip", addr))
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
