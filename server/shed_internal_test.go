package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestShedAnswerAndSampledLog: the pre-rendered answer to a shed login is
// exactly the busy answer (503, PostgREST body, Retry-After, no-store),
// every shed is counted, and a burst of sheds logs one line, then one
// line per shedLogEvery with how many were shed since the last.
func TestShedAnswerAndSampledLog(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := shedMetrics()
	d := newShedder(m, clock, slog.New(slog.NewJSONHandler(&logs, nil)), echo.ExtractIPDirect())

	const burst = 1000
	for i := range burst {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, loginPath, strings.NewReader(`{"user_":"u","pass":"p"}`))
		d.answer(w, r, d.clientIP(r), d.busy, 1)
		if i > 0 {
			continue
		}
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("status %d, want 503", w.Code)
		}
		const body = `{"code":"PT503","details":null,"hint":null,"message":"Too many logins at once; try again shortly"}`
		if got := w.Body.String(); got != body {
			t.Errorf("body %s, want %s", got, body)
		}
		want := http.Header{
			"Content-Type":   {"application/json; charset=utf-8"},
			"Cache-Control":  {"no-store"},
			"Retry-After":    {"1"},
			"Content-Length": {strconv.Itoa(len(body))},
		}
		if len(w.Header()) != len(want) {
			t.Errorf("headers %v, want %v", w.Header(), want)
		}
		for k, v := range want {
			if got := w.Header().Values(k); strings.Join(got, ",") != v[0] {
				t.Errorf("%s: %q, want %q", k, got, v[0])
			}
		}
	}
	// A sign-in form posted without JavaScript gets the refusal in words,
	// as form.go's pages give it, not JSON.
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, loginPath, strings.NewReader("user_=u&pass=p"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	d.answer(w, r, d.clientIP(r), d.busy, 1)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Content-Type") != "text/html; charset=UTF-8" ||
		w.Header().Get("Retry-After") != "1" || w.Header().Get("Content-Security-Policy") != formPageCSP ||
		!strings.Contains(w.Body.String(), "Too many logins at once; try again shortly") || strings.Contains(w.Body.String(), `"code"`) {
		t.Errorf("form navigation: got %d %v\n%s\nwant 503, an HTML page with the message, Retry-After and the page CSP", w.Code, w.Header(), w.Body)
	}
	if n, _ := strconv.Atoi(w.Header().Get("Content-Length")); n != w.Body.Len() {
		t.Errorf("form page Content-Length %s, body %d bytes", w.Header().Get("Content-Length"), w.Body.Len())
	}
	var c dto.Metric
	if err := d.busy.requests.(prometheus.Counter).Write(&c); err != nil || c.GetCounter().GetValue() != burst+1 {
		t.Errorf("authd_http_requests_total{route=%q,method=POST,status=503} = %v (%v), want %d", loginPath, c.GetCounter().GetValue(), err, burst)
	}
	lines := shedLines(t, &logs)
	if len(lines) != 1 || lines[0]["shed"] != 1.0 || lines[0]["remote_ip"] != "192.0.2.1" {
		t.Fatalf("a burst of %d sheds within %s logged %v, want one line for the first", burst, shedLogEvery, lines)
	}

	// shedLogEvery later, the next shed logs the rest of the burst (the
	// form post's included) and itself.
	mu.Lock()
	now = now.Add(shedLogEvery)
	mu.Unlock()
	r = httptest.NewRequest(http.MethodPost, loginPath, nil)
	d.answer(httptest.NewRecorder(), r, d.clientIP(r), d.busy, 1)
	if lines := shedLines(t, &logs); len(lines) != 2 || lines[1]["shed"] != float64(burst+1) {
		t.Errorf("after %s: logged %v, want a second line with shed=%d", shedLogEvery, lines, burst+1)
	}
}

// shedMetrics is the series a shedder writes to, unregistered.
func shedMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "r"}, []string{"route", "method", "status"}),
		latency:  prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "l"}, []string{"route"}),
		shedHeld: prometheus.NewCounter(prometheus.CounterOpts{Name: "h"}),
	}
}

func shedLines(t *testing.T, logs *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestShedHold: a login shed from an address that was shed less than the
// hold ago is answered after the hold, not at once — the client ignored
// Retry-After — while a first shed, another address and a client that
// waited out Retry-After are answered at once; a held login whose client
// leaves is not answered. Time is synctest's: the holds are exact.
func TestShedHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := shedMetrics()
		d := newShedder(m, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)), echo.ExtractIPDirect())
		d.holds = newShedHolds(time.Second)
		shed := func(ctx context.Context, addr string) (time.Duration, int) {
			w := httptest.NewRecorder()
			r := httptest.NewRequestWithContext(ctx, http.MethodPost, loginPath, strings.NewReader(`{}`))
			r.RemoteAddr = addr + ":40000"
			start := time.Now()
			d.answer(w, r, d.clientIP(r), d.busy, 1)
			return time.Since(start), w.Code
		}
		ctx := context.Background()
		for i, step := range []struct {
			addr  string
			sleep time.Duration // before it
			held  bool
		}{
			{addr: "192.0.2.1"},             // a first shed
			{addr: "192.0.2.1", held: true}, // again at once: Retry-After ignored
			{addr: "192.0.2.1", held: true}, // again as soon as answered
			{addr: "192.0.2.2"},             // another address
			{addr: "192.0.2.2", sleep: 999 * time.Millisecond, held: true},
			{addr: "192.0.2.2", sleep: time.Second}, // Retry-After waited out after its answer
		} {
			time.Sleep(step.sleep)
			took, code := shed(ctx, step.addr)
			want := time.Duration(0)
			if step.held {
				want = time.Second
			}
			if took != want || code != http.StatusServiceUnavailable {
				t.Errorf("step %d (%s): answered %d after %s, want 503 after %s", i, step.addr, code, took, want)
			}
		}
		var c dto.Metric
		if err := m.shedHeld.Write(&c); err != nil || c.GetCounter().GetValue() != 3 {
			t.Errorf("authd_login_shed_held_total = %v (%v), want 3", c.GetCounter().GetValue(), err)
		}
		// A held client that leaves is let go when it leaves, unanswered.
		ctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		if took, code := shed(ctx, "192.0.2.2"); took != 100*time.Millisecond || code != http.StatusOK {
			t.Errorf("a held client that left after 100ms: let go after %s with %d written, want 100ms and nothing (the recorder's 200)", took, code)
		}
		if n := d.holds.held.Load(); n != 0 {
			t.Errorf("%d answers still counted as held", n)
		}
	})
}

// TestShedHoldsAreBounded: the addresses remembered for holding are
// bounded, a flood from more addresses than that forgets them rather
// than growing, and no more than maxHeld answers are held at once.
func TestShedHoldsAreBounded(t *testing.T) {
	h := newShedHolds(time.Second)
	now := time.Unix(1_700_000_000, 0)
	for i := range 3 * maxHeldAddrs {
		h.shed(fmt.Sprint("10.", i/65536, ".", i/256%256, ".", i%256), now)
		if len(h.last) > maxHeldAddrs {
			t.Fatalf("%d addresses remembered, want at most %d", len(h.last), maxHeldAddrs)
		}
	}
	h.shed("192.0.2.1", now)
	h.held.Store(maxHeld)
	if h.shed("192.0.2.1", now) {
		t.Error("held with maxHeld answers already held")
	}
	h.held.Store(0)
	if !h.shed("192.0.2.1", now) {
		t.Error("not held: shed twice at once with nothing held")
	}
	if newShedHolds(0).shed("192.0.2.1", now) {
		t.Error("held with no hold configured")
	}
}

// TestThrottledAnswer: the door's answer to a login from an address past
// its share is 429 in PostgREST's shape with the wait it is given in
// Retry-After (a form's post gets the page in words), counted under 429,
// and logged once for a run with how many were refused and an address.
func TestThrottledAnswer(t *testing.T) {
	var logs bytes.Buffer
	m := shedMetrics()
	d := newShedder(m, time.Now, slog.New(slog.NewJSONHandler(&logs, nil)), echo.ExtractIPDirect())
	for _, wait := range []int{1, 7, 90} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, loginPath, strings.NewReader(`{"user_":"u","pass":"p"}`))
		d.answer(w, r, d.clientIP(r), d.throttled, wait)
		const body = `{"code":"PT429","details":null,"hint":null,"message":"Too many logins from this address; try again later"}`
		if w.Code != http.StatusTooManyRequests || w.Body.String() != body || w.Header().Get("Retry-After") != strconv.Itoa(wait) ||
			w.Header().Get("Content-Length") != strconv.Itoa(len(body)) || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("got %d %v %s, want 429 %s with Retry-After %d", w.Code, w.Header(), w.Body, body, wait)
		}
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, loginPath, strings.NewReader("user_=u&pass=p"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	d.answer(w, r, d.clientIP(r), d.throttled, 3)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Content-Type") != "text/html; charset=UTF-8" || w.Header().Get("Retry-After") != "3" ||
		!strings.Contains(w.Body.String(), "Too many logins from this address; try again later") {
		t.Errorf("form navigation: got %d %v\n%s\nwant 429, an HTML page with the message and Retry-After", w.Code, w.Header(), w.Body)
	}
	var c dto.Metric
	if err := d.throttled.requests.(prometheus.Counter).Write(&c); err != nil || c.GetCounter().GetValue() != 4 {
		t.Errorf("authd_http_requests_total{status=429} = %v (%v), want 4", c.GetCounter().GetValue(), err)
	}
	lines := shedLines(t, &logs)
	if len(lines) != 1 || lines[0]["msg"] != "logins refused: too many from one address" || lines[0]["refused"] != 1.0 || lines[0]["remote_ip"] != "192.0.2.1" {
		t.Errorf("logged %v, want one line for the first refusal", lines)
	}
}
