package server_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
	"time"

	"authd/identity"
	"authd/identity/notify"
	"authd/server"
	"authd/store"
)

// smtpServer is a minimal SMTP server for the tests: EHLO, STARTTLS
// (with tls set), AUTH PLAIN (with a user set: required before RCPT),
// MAIL, RCPT, DATA, QUIT. Each message accepted is sent on mails.
type smtpServer struct {
	addr       string
	tls        *tls.Config
	user, pass string
	mails      chan smtpMail
}

type smtpMail struct {
	from, to    string
	msg         *mail.Message
	body        string
	tls, authed bool
}

func startSMTP(t *testing.T, tlsCfg *tls.Config, user, pass string) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &smtpServer{addr: ln.Addr().String(), tls: tlsCfg, user: user, pass: pass, mails: make(chan smtpMail, 10)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(t, c)
		}
	}()
	return s
}

func (s *smtpServer) serve(t *testing.T, c net.Conn) {
	defer func() { c.Close() }()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	tp := textproto.NewConn(c)
	var m smtpMail
	reply := func(format string, args ...any) { _ = tp.PrintfLine(format, args...) }
	reply("220 test ESMTP")
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			lines := []string{"test"}
			if s.tls != nil && !m.tls {
				lines = append(lines, "STARTTLS")
			}
			if s.user != "" && (m.tls || s.tls == nil) {
				lines = append(lines, "AUTH PLAIN")
			}
			lines = append(lines, "8BITMIME")
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				reply("250%s%s", sep, l)
			}
		case "STARTTLS":
			reply("220 go ahead")
			tc := tls.Server(c, s.tls)
			if err := tc.Handshake(); err != nil {
				t.Errorf("smtp server: TLS handshake: %v", err)
				return
			}
			c, tp, m.tls = tc, textproto.NewConn(tc), true
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			b, _ := base64.StdEncoding.DecodeString(resp)
			if mech != "PLAIN" || string(b) != "\x00"+s.user+"\x00"+s.pass {
				reply("535 bad credentials")
				continue
			}
			m.authed = true
			reply("235 ok")
		case "MAIL":
			m.from = smtpPath(arg, "FROM:")
			reply("250 ok")
		case "RCPT":
			if s.user != "" && !m.authed {
				reply("530 authentication required")
				continue
			}
			m.to = smtpPath(arg, "TO:")
			reply("250 ok")
		case "DATA":
			reply("354 go on")
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			msg, err := mail.ReadMessage(strings.NewReader(string(data)))
			if err != nil {
				t.Errorf("smtp server: message %q: %v", data, err)
				return
			}
			body, _ := io.ReadAll(msg.Body)
			m.msg, m.body = msg, string(body)
			s.mails <- m
			reply("250 queued")
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("250 ok")
		}
	}
}

// smtpPath is the address of MAIL FROM:<a> or RCPT TO:<a>, without the
// parameters after it (BODY=8BITMIME).
func smtpPath(arg, prefix string) string {
	path, _, _ := strings.Cut(strings.TrimPrefix(arg, prefix), ">")
	return strings.TrimPrefix(path, "<")
}

func (s *smtpServer) next(t *testing.T) smtpMail {
	t.Helper()
	select {
	case m := <-s.mails:
		return m
	case <-time.After(time.Minute):
		t.Fatal("no mail within a minute")
		return smtpMail{}
	}
}

// webhookReceiver verifies Standard Webhooks signatures as a receiver
// would, with its own code, and passes on each verified event's data.
func webhookReceiver(t *testing.T, key []byte) (*httptest.Server, chan map[string]any) {
	got := make(chan map[string]any, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + ts + "." + string(body)))
		want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
		if id == "" || !hmac.Equal([]byte(r.Header.Get("webhook-signature")), []byte(want)) {
			t.Errorf("webhook: bad signature %q for id %q, timestamp %q", r.Header.Get("webhook-signature"), id, ts)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(body, &ev); err != nil || ev.Type != notify.WebhookType {
			t.Errorf("webhook: body %s: %v", body, err)
		}
		got <- ev.Data
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// withDelivery delivers reset links by senders, as serve does with
// AUTHD_RESET_WEBHOOK_URL and AUTHD_SMTP_URL, auditing to *e's database
// and logging to logs.
func withDelivery(t *testing.T, e **env, logs *syncBuffer, base string, senders ...notify.Sender) option {
	return func(_ *server.Config, ic *identity.Config, _ *envOpts) {
		d := notify.New(notify.Options{
			Metrics: ic.Metrics,
			Backoff: func(int) time.Duration { return time.Millisecond },
			Audit:   func(ctx context.Context, evs []store.AuditEvent) error { return (*e).db.WriteAudit(ctx, evs) },
			Log:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		}, senders...)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { d.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		ic.ResetDelivery, ic.ResetLinkBase = d, base
	}
}

// TestPasswordResetMail: with SMTP (STARTTLS, AUTH) and a webhook set, a
// user named by a mail address gets a mail from the configured sender
// whose link resets the password, and the webhook gets the same token,
// signed; a user whose name is no address gets the webhook only (smtp
// skipped). Deliveries are counted and audited, never with the token.
func TestPasswordResetMail(t *testing.T) {
	t.Parallel()
	// httptest's certificate (for 127.0.0.1) serves the SMTP server too.
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsSrv.Close()
	smtpSrv := startSMTP(t, tlsSrv.TLS, "mailer", "mail-secret")
	sender, err := notify.ParseSMTPURL("smtp://mailer:mail-secret@" + smtpSrv.addr)
	if err != nil {
		t.Fatal(err)
	}
	sender.From = mail.Address{Name: "Example", Address: "no-reply@example.com"}
	sender.TLS = &tls.Config{RootCAs: tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "127.0.0.1"}
	key := []byte("a webhook signing key of 32 byte")
	hook, hooked := webhookReceiver(t, key)

	var e *env
	logs := &syncBuffer{}
	e = newEnv(t, withDelivery(t, &e, logs, "https://app.example/", &sender, &notify.Webhook{URL: hook.URL, Secret: key}))
	const bob = "bob@example.com"
	e.addUser(bob, testPassword, e.role)

	if r := e.requestReset(bob); r.status != http.StatusNoContent {
		t.Fatalf("request: %d %s, want 204", r.status, r.body)
	}
	m := smtpSrv.next(t)
	if !m.tls || !m.authed || m.from != "no-reply@example.com" || m.to != bob {
		t.Errorf("mail: tls %v, authed %v, from %q, to %q; want STARTTLS, AUTH, no-reply@example.com to %s", m.tls, m.authed, m.from, m.to, bob)
	}
	for h, want := range map[string]string{"From": `"Example" <no-reply@example.com>`, "To": "<" + bob + ">", "Subject": notify.SMTPSubject} {
		if got := m.msg.Header.Get(h); got != want {
			t.Errorf("mail header %s: got %q, want %q", h, got, want)
		}
	}
	var link string
	for l := range strings.SplitSeq(m.body, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "https://app.example/reset?token=") {
			link = l
		}
	}
	u, err := url.Parse(link)
	if err != nil || link == "" {
		t.Fatalf("no link https://app.example/reset?token=… in the mail:\n%s", m.body)
	}
	tok := u.Query().Get("token")

	ev := <-hooked
	if ev["user"] != bob || ev["token"] != tok || ev["link"] != link || ev["expires_at"] == nil {
		t.Errorf("webhook data %v, want %s's token %q and link", ev, bob, tok)
	}
	if r := e.resetPassword(tok, resetPass); r.status != http.StatusNoContent {
		t.Fatalf("reset with the mailed token: %d %s, want 204", r.status, r.body)
	}
	if r := e.post("/rpc/login", jsonHeader(), loginBody(bob, resetPass)); r.status != http.StatusNoContent {
		t.Fatalf("login with the new password: %d %s", r.status, r.body)
	}

	// alice is no mail address: the webhook only.
	e.requestReset(testUser)
	if ev := <-hooked; ev["user"] != testUser {
		t.Errorf("webhook data %v, want %s's", ev, testUser)
	}
	waitFor(t, "the deliveries counted", func() bool {
		return e.metric(`authd_reset_deliveries_total{channel="smtp",result="skipped"}`) == 1 &&
			e.metric(`authd_reset_deliveries_total{channel="webhook",result="delivered"}`) == 2
	})
	if got := e.metric(`authd_reset_deliveries_total{channel="smtp",result="delivered"}`); got != 1 {
		t.Errorf("smtp delivered: %v, want 1", got)
	}
	waitFor(t, "the deliveries audited", func() bool {
		return e.count(`select count(*) from auth.audit_log where event = 'password_reset_delivery'`) == 4
	})
	for _, row := range []struct {
		user, channel, outcome string
	}{{bob, "smtp", "delivered"}, {bob, "webhook", "delivered"}, {testUser, "smtp", "skipped"}, {testUser, "webhook", "delivered"}} {
		if got := e.count(`select count(*) from auth.audit_log where event = 'password_reset_delivery'
			and username = $1 and details->>'channel' = $2 and outcome = $3`, row.user, row.channel, row.outcome); got != 1 {
			t.Errorf("%d audit rows for %+v, want 1", got, row)
		}
	}
	if got := e.count(`select count(*) from auth.audit_log where details::text like '%' || $1 || '%'`, tok); got != 0 {
		t.Error("the token is in the audit log")
	}
	if strings.Contains(e.logs.String(), tok) || strings.Contains(logs.String(), tok) {
		t.Error("the token is in the log")
	}
	if !strings.Contains(logs.String(), "password reset link delivered") {
		t.Errorf("no delivery logged:\n%s", logs)
	}
}

func withResetsPerUser(n int) option {
	return func(_ *server.Config, ic *identity.Config, _ *envOpts) { ic.ResetsPerUser = n }
}

// TestPasswordResetPerUser: past AUTHD_RESET_PER_USER requests naming a
// user, counted over every instance, the answer is still 204 but no token
// is issued: the last one issued stays live. Another user is not
// affected.
func TestPasswordResetPerUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withResetsPerUser(2))
	other, _, _, _, _ := e.newServer(withResetsPerUser(2)) // a second instance
	l := resetListener(t, e.url)
	e.requestReset(testUser)
	nextNotice(t, l)
	if r := do(t, nil, http.MethodPost, other.URL+"/rpc/request_password_reset", jsonHeader(), `{"user_": "`+testUser+`"}`); r.status != http.StatusNoContent {
		t.Fatalf("second, on the other instance: %d %s, want 204", r.status, r.body)
	}
	second := nextNotice(t, l)
	if r := e.requestReset(testUser); r.status != http.StatusNoContent || r.body != "" {
		t.Fatalf("third: %d %s, want 204", r.status, r.body)
	}
	if got := e.count(`select count(*) from auth.password_reset where token_hash = sha256(convert_to($1, 'UTF8')) and used_at is null`, second.Token); got != 1 {
		t.Fatal("the third request replaced the second's token")
	}
	e.addUser("carol", testPassword, e.role)
	e.requestReset("carol")
	if n := nextNotice(t, l); n.User != "carol" {
		t.Fatalf("notification for %q, want carol's", n.User)
	}
	if r := e.resetPassword(second.Token, resetPass); r.status != http.StatusNoContent {
		t.Fatalf("reset with the second token: %d %s, want 204", r.status, r.body)
	}
}

// TestPasswordResetMailTLS: to a server that offers no STARTTLS, the link
// goes in clear only when that is allowed (a loopback relay); otherwise
// the delivery fails at once, and no mail leaves.
func TestPasswordResetMailTLS(t *testing.T) {
	t.Parallel()
	smtpSrv := startSMTP(t, nil, "", "")
	plain, err := notify.ParseSMTPURL("smtp://" + smtpSrv.addr)
	if err != nil {
		t.Fatal(err)
	}
	plain.From = mail.Address{Address: "no-reply@example.com"}
	strict := plain
	strict.PlainAllowed = false // as for any host but a loopback one
	var e *env
	e = newEnv(t, withDelivery(t, &e, &syncBuffer{}, "https://app.example", &plain, &strict))
	e.addUser("bob@example.com", testPassword, e.role)
	e.requestReset("bob@example.com")
	if m := smtpSrv.next(t); m.tls || m.to != "bob@example.com" {
		t.Errorf("mail: tls %v, to %q; want a plain mail to bob@example.com", m.tls, m.to)
	}
	// The two senders run in parallel lanes, and the plain one counts its
	// delivery only after QUIT, which follows the mail's arrival above:
	// wait for both outcomes rather than read one while it may be on its way.
	waitFor(t, "the plain sender's delivery and the strict sender's failure", func() bool {
		return e.metric(`authd_reset_deliveries_total{channel="smtp",result="failed"}`) == 1 &&
			e.metric(`authd_reset_deliveries_total{channel="smtp",result="delivered"}`) >= 1
	})
	if got := e.metric(`authd_reset_deliveries_total{channel="smtp",result="delivered"}`); got != 1 {
		t.Errorf("delivered %v, want 1", got)
	}
	select {
	case m := <-smtpSrv.mails:
		t.Errorf("a second mail, tls %v: the strict sender sent in clear", m.tls)
	default:
	}
}
