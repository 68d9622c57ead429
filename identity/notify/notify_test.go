package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"authd/store"
)

// counter is the value of authd_reset_deliveries_total{channel,result}.
func counter(t *testing.T, reg *prometheus.Registry, channel, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["channel"] == channel && l["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series {channel=%q,result=%q}", channel, result)
	return 0
}

// auditLog keeps the audit events a dispatcher writes.
type auditLog struct {
	mu     sync.Mutex
	events []store.AuditEvent
	done   chan struct{}
}

func newAuditLog() *auditLog { return &auditLog{done: make(chan struct{}, 10)} }

func (a *auditLog) write(_ context.Context, evs []store.AuditEvent) error {
	a.mu.Lock()
	a.events = append(a.events, evs...)
	a.mu.Unlock()
	a.done <- struct{}{}
	return nil
}

func (a *auditLog) next(t *testing.T) store.AuditEvent {
	t.Helper()
	select {
	case <-a.done:
	case <-time.After(time.Minute):
		t.Fatal("no delivery ended within a minute")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.events[len(a.events)-1]
}

func run(t *testing.T, d *Dispatcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

var testKey = []byte("a webhook signing key of 32 byte")

// TestWebhookRetries: a receiver that answers 503 twice gets the same
// message (webhook-id) a third time, signed for each attempt's timestamp;
// a 400 is not retried. Both are counted and audited, without the token.
func TestWebhookRetries(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		attempts []string // webhook-id of each attempt
		status   = []int{503, 503, 200, 400}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
		if r.Header.Get("webhook-signature") != Sign(testKey, id, ts, body) {
			t.Errorf("attempt with a bad signature")
		}
		var ev webhookEvent
		if err := json.Unmarshal(body, &ev); err != nil || ev.Data.Token != "the-token" {
			t.Errorf("body %s: %v", body, err)
		}
		mu.Lock()
		attempts = append(attempts, id)
		s := status[min(len(attempts), len(status))-1]
		mu.Unlock()
		w.WriteHeader(s)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	audit := newAuditLog()
	d := New(Options{Metrics: reg, Audit: audit.write, Backoff: func(int) time.Duration { return time.Millisecond }},
		&Webhook{URL: srv.URL, Secret: testKey})
	run(t, d)

	d.Deliver(Reset{User: "alice", Token: "the-token", ExpiresAt: time.Now().Add(time.Hour)})
	e := audit.next(t)
	if e.Event != AuditDelivery || e.Outcome != "delivered" || e.Username != "alice" || e.Details["attempts"] != "3" || e.Details["channel"] != "webhook" {
		t.Errorf("audit event %+v, want alice's delivered by webhook in 3 attempts", e)
	}
	mu.Lock()
	if len(attempts) != 3 || attempts[0] != attempts[1] || attempts[1] != attempts[2] || !strings.HasPrefix(attempts[0], "msg_") {
		t.Errorf("webhook-ids %q, want one msg_ id three times", attempts)
	}
	mu.Unlock()

	d.Deliver(Reset{User: "bob", Token: "the-token"})
	if e := audit.next(t); e.Outcome != "failed" || e.Details["attempts"] != "1" {
		t.Errorf("after a 400: audit event %+v, want failed in 1 attempt", e)
	}
	if got := counter(t, reg, "webhook", "delivered"); got != 1 {
		t.Errorf("delivered %v, want 1", got)
	}
	if got := counter(t, reg, "webhook", "failed"); got != 1 {
		t.Errorf("failed %v, want 1", got)
	}
	for _, e := range audit.events {
		if strings.Contains(strings.Join([]string{e.Username, e.Details["channel"], e.Details["attempts"]}, " "), "the-token") {
			t.Error("the token is in the audit log")
		}
	}
}

// blocked is a sender that never finishes until released.
type blocked struct{ release chan struct{} }

func (b blocked) Channel() string { return "webhook" }
func (b blocked) Send(ctx context.Context, _ Reset) error {
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil
}

// TestDeliverNeverWaits: with the sender stuck and its queue full,
// Deliver returns at once and drops the link, counted.
func TestDeliverNeverWaits(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := blocked{release: make(chan struct{})}
	defer close(s.release)
	d := New(Options{Metrics: reg, QueueSize: 2}, s)
	for range 5 { // no Run: nothing leaves the queue
		d.Deliver(Reset{User: "alice", Token: "t"})
	}
	if got := counter(t, reg, "webhook", "dropped"); got != 3 {
		t.Errorf("dropped %v, want 3", got)
	}
}

func TestParseWebhookSecret(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true}, // 24 bytes: Standard Webhooks' example
		{"whsec_" + strings.Repeat("A", 44), true},
		{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false},
		{"whsec_c2hvcnQ=", false},
		{"whsec_not base64!", false},
	} {
		if _, err := ParseWebhookSecret(tc.in); (err == nil) != tc.ok {
			t.Errorf("ParseWebhookSecret(%q): %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

func TestCheckWebhookURL(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"https://hooks.example/reset", true},
		{"http://127.0.0.1:8080/reset", true},
		{"http://localhost/reset", true},
		{"http://hooks.example/reset", false},
		{"ftp://hooks.example/", false},
		{"https://", false},
	} {
		if err := CheckWebhookURL(tc.in); (err == nil) != tc.ok {
			t.Errorf("CheckWebhookURL(%q): %v, want ok %v", tc.in, err, tc.ok)
		}
	}
	if err := CheckWebhookURL("http://u:hunter2@hooks.example/"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("an http URL with a password: %v, want an error without the password", err)
	}
}

func TestParseSMTPURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want SMTP
	}{
		{"smtp://mail.example", SMTP{Host: "mail.example", Port: "587"}},
		{"smtp://u:p%40ss@mail.example:2525", SMTP{Host: "mail.example", Port: "2525", Username: "u", Password: "p@ss"}},
		{"smtps://u@mail.example", SMTP{Host: "mail.example", Port: "465", ImplicitTLS: true, Username: "u"}},
		{"smtp://127.0.0.1:1025", SMTP{Host: "127.0.0.1", Port: "1025", PlainAllowed: true}},
		{"smtp://localhost", SMTP{Host: "localhost", Port: "587", PlainAllowed: true}},
	} {
		got, err := ParseSMTPURL(tc.in)
		if err != nil || got.Host != tc.want.Host || got.Port != tc.want.Port || got.ImplicitTLS != tc.want.ImplicitTLS ||
			got.PlainAllowed != tc.want.PlainAllowed || got.Username != tc.want.Username || got.Password != tc.want.Password {
			t.Errorf("ParseSMTPURL(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"http://mail.example", "smtp://", "smtp://mail.example/path", "smtp://mail.example?tls=no", "smtp://u:secret@%zz"} {
		if _, err := ParseSMTPURL(bad); err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseSMTPURL(%q): %v, want an error without the password", bad, err)
		}
	}
}

func TestRecipient(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"bob@example.com", true},
		{"bob.smith+tag@mail.example.co", true},
		{"alice", false},
		{"Bob <bob@example.com>", false},
		{"<bob@example.com>", false},
		{"bob@example.com\r\nBcc: eve@example.com", false},
		{"bob@example.com, eve@example.com", false},
	} {
		if _, ok := Recipient(tc.in); ok != tc.ok {
			t.Errorf("Recipient(%q) ok %v, want %v", tc.in, ok, tc.ok)
		}
	}
}

// FuzzRecipient: whatever a user name holds, an address accepted is the
// name itself and brings no line break into the mail's headers.
func FuzzRecipient(f *testing.F) {
	for _, s := range []string{"bob@example.com", "alice", "Bob <bob@example.com>", "a@b\r\nBcc: c@d", "\"a b\"@example.com", "bob@[127.0.0.1]"} {
		f.Add(s)
	}
	s := &SMTP{From: mailAddress("no-reply@example.com")}
	f.Fuzz(func(t *testing.T, name string) {
		a, ok := Recipient(name)
		if !ok {
			return
		}
		if a.Address != name {
			t.Fatalf("Recipient(%q) = %q", name, a.Address)
		}
		msg := string(s.message(a, Reset{User: name, Link: "https://app.example/reset?token=t"}))
		head, _, _ := strings.Cut(msg, "\n\n")
		if strings.Count(head, "\n") != 8 || strings.Contains(head, "\r") {
			t.Fatalf("the headers of a mail to %q are not 9 lines:\n%s", name, head)
		}
	})
}

// FuzzParseSMTPURL: a URL accepted names a host and a port of digits.
func FuzzParseSMTPURL(f *testing.F) {
	for _, s := range []string{"smtp://u:p@mail.example:25", "smtps://mail.example", "smtp://[::1]:1025", "smtp://u:p@", "smtp://u:p@h/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := ParseSMTPURL(raw)
		if err != nil {
			return
		}
		if s.Host == "" || strings.ContainsAny(s.Host, "/@?#") || strings.Trim(s.Port, "0123456789") != "" || s.Port == "" {
			t.Fatalf("ParseSMTPURL(%q) = host %q, port %q", raw, s.Host, s.Port)
		}
	})
}

func mailAddress(a string) mail.Address { return mail.Address{Address: a} }
