package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// WebhookType is the type of the webhook's events.
const WebhookType = "password_reset.requested"

// MinWebhookSecret is the shortest signing key accepted, in bytes: what
// Standard Webhooks' libraries generate.
const MinWebhookSecret = 24

// Webhook posts reset links to URL as JSON, signed as Standard Webhooks
// (standardwebhooks.com) specify, so that any of their libraries verifies
// them: headers webhook-id, webhook-timestamp and webhook-signature
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" under Secret.
type Webhook struct {
	URL string
	// Secret is the signing key: the base64 after whsec_
	// (ParseWebhookSecret).
	Secret []byte
	// Client makes the requests; nil means one that follows no redirect
	// (a redirect would replay the token to another address).
	Client *http.Client
	// Now is the clock of webhook-timestamp; nil means time.Now.
	Now func() time.Time
}

// ParseWebhookSecret reads a signing secret in Standard Webhooks' form,
// whsec_ and the base64 of at least MinWebhookSecret bytes.
func ParseWebhookSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), "whsec_")
	if !ok {
		return nil, errors.New("want whsec_ and base64, as from: echo whsec_$(openssl rand -base64 32)")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("the part after whsec_ is not base64")
	}
	if len(key) < MinWebhookSecret {
		return nil, fmt.Errorf("want at least %d bytes after whsec_, got %d", MinWebhookSecret, len(key))
	}
	return key, nil
}

// CheckWebhookURL refuses a webhook address the token should not go to
// in clear: https://, or http:// only to a receiver on the loopback
// interface. Its error holds no password of the URL.
func CheckWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("want an https:// URL")
	}
	if u.Scheme == "https" || u.Scheme == "http" && loopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("want an https:// URL (http:// only to localhost), got %q", u.Redacted())
}

// Channel is "webhook".
func (w *Webhook) Channel() string { return "webhook" }

// webhookEvent is the body: Standard Webhooks' envelope of type,
// timestamp and data.
type webhookEvent struct {
	Type      string      `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      webhookData `json:"data"`
}

type webhookData struct {
	User      string    `json:"user"`
	Token     string    `json:"token"`
	Link      string    `json:"link,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Send posts r once. A 2xx answer delivers it; 408, 429 and 5xx may be
// retried, any other answer is ErrPermanent.
func (w *Webhook) Send(ctx context.Context, r Reset) error {
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	at := now()
	body, err := json.Marshal(webhookEvent{
		Type: WebhookType, Timestamp: at.UTC(),
		Data: webhookData{User: r.User, Token: r.Token, Link: r.Link, ExpiresAt: r.ExpiresAt.UTC()},
	})
	if err != nil {
		return fmt.Errorf("webhook body: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	ts := strconv.FormatInt(at.Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "authd")
	req.Header.Set("webhook-id", r.ID)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", Sign(w.Secret, r.ID, ts, body))
	c := w.Client
	if c == nil {
		c = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err) // names the URL without its password
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		return nil
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500:
		return fmt.Errorf("webhook answered %d", s)
	default:
		return fmt.Errorf("webhook answered %d: %w", s, ErrPermanent)
	}
}

// Sign is the webhook-signature of a message: "v1," and the base64 of
// HMAC-SHA256 under key of id.timestamp.body.
func Sign(key []byte, id, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + timestamp + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
