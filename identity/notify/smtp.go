package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strings"
	"time"
)

// SMTPSubject is the subject of the reset mail.
const SMTPSubject = "Reset your password"

// SMTP mails reset links with the standard library's client: a plain-text
// message, sent to the user name when it is a mail address (Recipient).
// The link is a credential, so it crosses the network only in TLS:
// smtps:// speaks TLS from the start, smtp:// requires STARTTLS, except to
// a relay on the loopback interface, which gets STARTTLS when it offers it.
type SMTP struct {
	Host, Port string
	// ImplicitTLS is smtps://: TLS from the first byte (port 465).
	ImplicitTLS bool
	// PlainAllowed lets the message go without TLS to a server that does
	// not offer STARTTLS: a relay on the loopback interface.
	PlainAllowed bool
	// Username and Password, when Username is set, log in with AUTH PLAIN,
	// which net/smtp sends only over TLS or to localhost.
	Username, Password string
	From               mail.Address
	// TLS is the client configuration for STARTTLS and smtps; nil means
	// the system's roots, for Host.
	TLS *tls.Config
	// Now is the clock of the Date header; nil means time.Now.
	Now func() time.Time
}

// ParseSMTPURL reads AUTHD_SMTP_URL: smtp://[user[:password]@]host[:port]
// (STARTTLS, port 587 by default) or smtps://… (TLS, port 465).
func ParseSMTPURL(raw string) (SMTP, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return SMTP{}, errors.New("not a URL") // url's error would repeat a password
	}
	var s SMTP
	switch u.Scheme {
	case "smtp":
		s.Port = "587"
	case "smtps":
		s.ImplicitTLS, s.Port = true, "465"
	default:
		return SMTP{}, fmt.Errorf("want smtp:// or smtps://, got %q", u.Scheme+"://")
	}
	if u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return SMTP{}, errors.New("want smtp[s]://[user[:password]@]host[:port] and nothing more")
	}
	s.Host = u.Hostname()
	if p := u.Port(); p != "" {
		s.Port = p
	}
	if u.User != nil {
		s.Username = u.User.Username()
		s.Password, _ = u.User.Password()
	}
	s.PlainAllowed = !s.ImplicitTLS && loopback(s.Host)
	return s, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Recipient is the address a user's mail goes to: the user name, when it
// is a bare mail address (bob@example.com, not "Bob <bob@example.com>").
// authd keeps no other address; apps whose addresses live elsewhere
// deliver through the webhook or pg_notify.
func Recipient(username string) (mail.Address, bool) {
	a, err := mail.ParseAddress(username)
	if err != nil || a.Name != "" || a.Address != username || strings.ContainsAny(username, "\r\n") {
		return mail.Address{}, false
	}
	return *a, true
}

// Channel is "smtp".
func (s *SMTP) Channel() string { return "smtp" }

// Send mails r once. A user name that is no mail address is
// ErrNoRecipient; a 5xx reply of the server is ErrPermanent.
func (s *SMTP) Send(ctx context.Context, r Reset) error {
	to, ok := Recipient(r.User)
	if !ok {
		return fmt.Errorf("smtp: the user name is not a mail address: %w", ErrNoRecipient)
	}
	if r.Link == "" {
		return fmt.Errorf("smtp: no link to send (AUTHD_RESET_LINK_BASE): %w", ErrPermanent)
	}
	err := s.send(ctx, to, s.message(to, r))
	if te := (*textproto.Error)(nil); errors.As(err, &te) && te.Code >= 500 {
		err = fmt.Errorf("%w: %w", err, ErrPermanent)
	}
	return err
}

func (s *SMTP) send(ctx context.Context, to mail.Address, msg []byte) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(s.Host, s.Port))
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	defer conn.Close()
	// The attempt's deadline holds for every reply, not only the dial.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	cfg := s.TLS
	if cfg == nil {
		cfg = &tls.Config{ServerName: s.Host}
	}
	if s.ImplicitTLS {
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("smtp: TLS: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.Host)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	defer c.Close()
	if !s.ImplicitTLS {
		switch ok, _ := c.Extension("STARTTLS"); {
		case ok:
			if err := c.StartTLS(cfg); err != nil {
				return fmt.Errorf("smtp: STARTTLS: %w", err)
			}
		case !s.PlainAllowed:
			return fmt.Errorf("smtp: %s offers no STARTTLS; a reset link is not sent in clear: %w", s.Host, ErrPermanent)
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, s.Host)); err != nil {
			return fmt.Errorf("smtp: log in as %q: %w", s.Username, err)
		}
	}
	if err := c.Mail(s.From.Address); err != nil {
		return fmt.Errorf("smtp: MAIL FROM: %w", err)
	}
	if err := c.Rcpt(to.Address); err != nil {
		return fmt.Errorf("smtp: RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp: DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("smtp: write the message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp: message refused: %w", err)
	}
	_ = c.Quit() // the message is accepted; a failed goodbye changes nothing
	return nil
}

// message is the plain-text mail of r to to. Lines end in \n; net/smtp's
// DATA writer turns them into CRLF and escapes leading dots.
func (s *SMTP) message(to mail.Address, r Reset) []byte {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	_, domain, _ := strings.Cut(s.From.Address, "@")
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\n", s.From.String())
	fmt.Fprintf(&b, "To: %s\n", to.String())
	fmt.Fprintf(&b, "Subject: %s\n", SMTPSubject)
	fmt.Fprintf(&b, "Date: %s\n", now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\n", r.ID, domain)
	b.WriteString("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\nAuto-Submitted: auto-generated\n\n")
	fmt.Fprintf(&b, "Someone asked to reset the password of %s.\n\nTo choose a new password, open this link:\n\n%s\n\n", r.User, r.Link)
	fmt.Fprintf(&b, "It works once, until %s. If you did not ask, ignore this mail: your password stays as it is.\n",
		r.ExpiresAt.UTC().Format("2006-01-02 15:04 MST"))
	return b.Bytes()
}
