package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
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
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "r"}, []string{"route", "method", "status"}),
		latency:  prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "l"}, []string{"route"}),
	}
	d := newShedder(m, clock, slog.New(slog.NewJSONHandler(&logs, nil)), echo.ExtractIPDirect())

	const burst = 1000
	for i := range burst {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, loginPath, strings.NewReader(`{"user_":"u","pass":"p"}`))
		d.answer(w, r)
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
	d.answer(w, r)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Content-Type") != "text/html; charset=UTF-8" ||
		w.Header().Get("Retry-After") != "1" || w.Header().Get("Content-Security-Policy") != formPageCSP ||
		!strings.Contains(w.Body.String(), "Too many logins at once; try again shortly") || strings.Contains(w.Body.String(), `"code"`) {
		t.Errorf("form navigation: got %d %v\n%s\nwant 503, an HTML page with the message, Retry-After and the page CSP", w.Code, w.Header(), w.Body)
	}
	if n, _ := strconv.Atoi(w.Header().Get("Content-Length")); n != w.Body.Len() {
		t.Errorf("form page Content-Length %s, body %d bytes", w.Header().Get("Content-Length"), w.Body.Len())
	}
	var c dto.Metric
	if err := d.requests.(prometheus.Counter).Write(&c); err != nil || c.GetCounter().GetValue() != burst+1 {
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
	d.answer(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, loginPath, nil))
	if lines := shedLines(t, &logs); len(lines) != 2 || lines[1]["shed"] != float64(burst+1) {
		t.Errorf("after %s: logged %v, want a second line with shed=%d", shedLogEvery, lines, burst+1)
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
