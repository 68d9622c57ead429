// Package notify delivers password reset links by the hooks an operator
// configures besides pg_notify: an HTTP webhook (Webhook) and SMTP (SMTP).
// Each hook is a Sender; a Dispatcher queues the links for them off the
// request path, so that neither a slow mail server nor a dead webhook
// makes /rpc/request_password_reset slower for a user who exists than for
// one who does not. Nothing here logs or audits a token.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"authd/store"
)

// Reset is one reset link to deliver.
type Reset struct {
	// ID names this message for receivers that deduplicate retries
	// (webhook-id, Message-ID); Dispatcher.Deliver sets it.
	ID    string
	User  string
	Token string
	// Link is the page that spends Token (Link); "" when no link base is
	// configured.
	Link      string
	ExpiresAt time.Time
}

// Link is the reset page's address for token: base/reset?token=…, the
// form `authd user reset-link` prints.
func Link(base, token string) string {
	return strings.TrimRight(base, "/") + "/reset?token=" + url.QueryEscape(token)
}

// Sender delivers a reset link by one channel. Send is one attempt; an
// error wrapping ErrNoRecipient (nowhere to send this user's link) or
// ErrPermanent (the receiver refused it) is not retried.
type Sender interface {
	// Channel names the sender in metrics and the audit log: a fixed
	// word such as "webhook" or "smtp".
	Channel() string
	Send(ctx context.Context, r Reset) error
}

var (
	// ErrNoRecipient means the sender has no address for the user: the
	// delivery is skipped, not failed.
	ErrNoRecipient = errors.New("no address to deliver to")
	// ErrPermanent means another attempt would be refused the same way.
	ErrPermanent = errors.New("refused")
)

// Options are the Dispatcher's bounds and dependencies.
type Options struct {
	// QueueSize is how many links may wait per sender; one more is
	// dropped (counted and logged). 0 means DefaultQueueSize.
	QueueSize int
	// Attempts is how many times a link is tried per sender; 0 means
	// DefaultAttempts.
	Attempts int
	// Timeout bounds each attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// Backoff is the pause after failed attempt n (from 1); nil means
	// DefaultBackoff. Tests shorten it.
	Backoff func(n int) time.Duration
	// Metrics is where authd_reset_deliveries_total is registered; nil
	// means a registry of its own.
	Metrics *prometheus.Registry
	// Audit writes the audit events of deliveries (store.DB.WriteAudit);
	// nil writes none.
	Audit func(context.Context, []store.AuditEvent) error
	Log   *slog.Logger
}

// The defaults of Options.
const (
	DefaultQueueSize = 100
	DefaultAttempts  = 3
	DefaultTimeout   = 10 * time.Second
)

// DefaultBackoff waits 2 s after the first failure, then 8 s, 32 s…:
// long enough for a receiver to come back from a restart, short enough
// that the link is still young when it arrives.
func DefaultBackoff(n int) time.Duration {
	return 2 * time.Second << (2 * min(n-1, 5))
}

// The results counted in authd_reset_deliveries_total.
var results = []string{"delivered", "failed", "skipped", "dropped"}

// AuditDelivery is the audit event of a delivery: outcome is one of the
// results, details name the channel and the attempts made.
const AuditDelivery = "password_reset_delivery"

// Dispatcher hands reset links to its senders, each through a queue and
// a worker of its own, so that one slow channel does not hold up another.
type Dispatcher struct {
	opts  Options
	lanes []lane
	count *prometheus.CounterVec
}

type lane struct {
	s Sender
	q chan Reset
}

// New returns a dispatcher for senders; Run delivers.
func New(opts Options, senders ...Sender) *Dispatcher {
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Backoff == nil {
		opts.Backoff = DefaultBackoff
	}
	if opts.Metrics == nil {
		opts.Metrics = prometheus.NewRegistry()
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{
		opts: opts,
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_reset_deliveries_total",
			Help: "Password reset links by delivery channel (webhook, smtp) and result: delivered, failed (after every attempt), skipped (no address for the user), dropped (queue full).",
		}, []string{"channel", "result"}),
	}
	for _, s := range senders {
		d.lanes = append(d.lanes, lane{s: s, q: make(chan Reset, opts.QueueSize)})
		for _, r := range results {
			d.count.WithLabelValues(s.Channel(), r)
		}
	}
	opts.Metrics.MustRegister(d.count)
	return d
}

// Deliver queues r for every sender and returns at once: a full queue
// drops r for that sender, counted and logged (without the token) but
// not audited, since the audit write would make the request wait.
func (d *Dispatcher) Deliver(r Reset) {
	if r.ID == "" {
		r.ID = newID()
	}
	for _, l := range d.lanes {
		select {
		case l.q <- r:
		default:
			d.count.WithLabelValues(l.s.Channel(), "dropped").Inc()
			d.opts.Log.Warn("password reset link not delivered: the delivery queue is full",
				"channel", l.s.Channel(), "user", r.User, "queue", cap(l.q))
		}
	}
}

// Run delivers queued links until ctx ends; links still queued then are
// lost (their users may ask again).
func (d *Dispatcher) Run(ctx context.Context) {
	done := make(chan struct{})
	for _, l := range d.lanes {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-ctx.Done():
					return
				case r := <-l.q:
					d.send(ctx, l.s, r)
				}
			}
		}()
	}
	for range d.lanes {
		<-done
	}
}

// send tries r on s up to Attempts times, with Backoff between.
func (d *Dispatcher) send(ctx context.Context, s Sender, r Reset) {
	ch := s.Channel()
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
		err := s.Send(actx, r)
		cancel()
		switch {
		case err == nil:
			d.done(ctx, ch, r, "delivered", n)
			d.opts.Log.Info("password reset link delivered", "channel", ch, "user", r.User, "attempts", n)
			return
		case errors.Is(err, ErrNoRecipient):
			d.done(ctx, ch, r, "skipped", n)
			d.opts.Log.Debug("password reset link not delivered: no address for the user", "channel", ch, "user", r.User, "err", err)
			return
		case ctx.Err() != nil:
			return // shutting down
		case errors.Is(err, ErrPermanent) || n >= d.opts.Attempts:
			d.done(ctx, ch, r, "failed", n)
			d.opts.Log.Warn("password reset link not delivered", "channel", ch, "user", r.User, "attempts", n, "err", err)
			return
		}
		pause := d.opts.Backoff(n)
		d.opts.Log.Info("password reset delivery failed; retrying", "channel", ch, "user", r.User,
			"attempt", n, "retry_in_ms", pause.Milliseconds(), "err", err)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// done counts and audits the end of r's delivery on channel ch.
func (d *Dispatcher) done(ctx context.Context, ch string, r Reset, result string, attempts int) {
	d.count.WithLabelValues(ch, result).Inc()
	if d.opts.Audit == nil {
		return
	}
	e := store.AuditEvent{
		Event: AuditDelivery, Username: r.User, Outcome: result,
		Details: map[string]string{"channel": ch, "attempts": strconv.Itoa(attempts)},
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := d.opts.Audit(ctx, []store.AuditEvent{e}); err != nil {
		d.opts.Log.Warn("audit event lost", "event", AuditDelivery, "err", err)
	}
}

// newID is a message id in Standard Webhooks' style: msg_ and 128
// random bits.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "msg_" + base64.RawURLEncoding.EncodeToString(b)
}
