package main

import (
	"log/slog"
	"net/mail"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"

	"authd/identity/notify"
	"authd/store"
)

// resetDelivery is how reset links leave authd besides pg_notify:
// AUTHD_RESET_WEBHOOK_* and AUTHD_SMTP_*.
type resetDelivery struct {
	// LinkBase is AUTHD_RESET_LINK_BASE, else AUTHD_JWT_ISS: the site of
	// the links delivered (BASE/reset?token=…), as user reset-link prints.
	LinkBase string
	// Webhook and SMTP are nil when not configured.
	Webhook *notify.Webhook
	SMTP    *notify.SMTP
}

// readResetDelivery reads the delivery hooks' settings. Secrets come
// from a variable or its *_FILE, and never appear in errors.
func readResetDelivery(e *env) resetDelivery {
	d := resetDelivery{LinkBase: e.str("AUTHD_RESET_LINK_BASE", e.getenv("AUTHD_JWT_ISS"))}
	if d.LinkBase != "" {
		if u, err := url.Parse(d.LinkBase); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			e.fail("AUTHD_RESET_LINK_BASE", "want the site's address such as https://app.example.com, got %q (from AUTHD_JWT_ISS when unset)", d.LinkBase)
		}
	}
	if raw := e.getenv("AUTHD_RESET_WEBHOOK_URL"); raw != "" {
		d.Webhook = &notify.Webhook{URL: raw}
		if err := notify.CheckWebhookURL(raw); err != nil {
			e.fail("AUTHD_RESET_WEBHOOK_URL", "%v", err)
		}
		secret, ok := secretVar(e, "AUTHD_RESET_WEBHOOK_SECRET")
		switch key, err := notify.ParseWebhookSecret(secret); {
		case !ok:
		case secret == "":
			e.fail("AUTHD_RESET_WEBHOOK_SECRET", "not set (nor AUTHD_RESET_WEBHOOK_SECRET_FILE), but AUTHD_RESET_WEBHOOK_URL is: the receiver verifies the signature made with it; make one with: echo whsec_$(openssl rand -base64 32)")
		case err != nil:
			e.fail("AUTHD_RESET_WEBHOOK_SECRET", "%v", err)
		default:
			d.Webhook.Secret = key
		}
	}
	if raw := e.getenv("AUTHD_SMTP_URL"); raw != "" {
		s, err := notify.ParseSMTPURL(raw)
		if err != nil {
			e.fail("AUTHD_SMTP_URL", "%v", err)
		}
		if pw, _ := secretVar(e, "AUTHD_SMTP_PASSWORD"); pw != "" {
			switch {
			case s.Password != "":
				e.fail("AUTHD_SMTP_PASSWORD", "set, but AUTHD_SMTP_URL holds a password too: use one")
			case s.Username == "":
				e.fail("AUTHD_SMTP_PASSWORD", "set, but AUTHD_SMTP_URL names no user (smtp://user@host)")
			default:
				s.Password = pw
			}
		}
		from, err := mail.ParseAddress(e.getenv("AUTHD_SMTP_FROM"))
		if err != nil {
			e.fail("AUTHD_SMTP_FROM", "want the sender's address such as \"Example <no-reply@example.com>\", got %q", e.getenv("AUTHD_SMTP_FROM"))
		} else {
			s.From = *from
		}
		if d.LinkBase == "" {
			e.fail("AUTHD_RESET_LINK_BASE", "not set (nor AUTHD_JWT_ISS), but AUTHD_SMTP_URL is: the mail's link is AUTHD_RESET_LINK_BASE/reset?token=…")
		}
		d.SMTP = &s
	}
	return d
}

// dispatcher queues reset links for the configured hooks, with its
// metrics on reg and its audit events in db; nil when none is configured.
func (d resetDelivery) dispatcher(db *store.DB, reg *prometheus.Registry, log *slog.Logger) *notify.Dispatcher {
	var senders []notify.Sender
	if d.Webhook != nil {
		senders = append(senders, d.Webhook)
	}
	if d.SMTP != nil {
		senders = append(senders, d.SMTP)
	}
	if len(senders) == 0 {
		return nil
	}
	return notify.New(notify.Options{Metrics: reg, Audit: db.WriteAudit, Log: log}, senders...)
}
