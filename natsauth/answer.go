package natsauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"authd/identity"
	"authd/natsauth/workload"
	"authd/store"
	"authd/token"
)

// The ways a client can present itself, for logs and metrics.
const (
	methodToken    = "token"
	methodAPIKey   = "api_key"
	methodPassword = "password"
	// methodK8s: a workload token of a trusted issuer (a Kubernetes
	// service-account token).
	methodK8s  = "k8s"
	methodNone = "none"
)

// APIKeyUser is the NATS username that marks the password as an API key,
// for clients that can send a username and password but no token (MQTT
// clients, some libraries). A user named "apikey" therefore cannot log in
// to NATS with a password; an API key sent as the token needs no username.
const APIKeyUser = "apikey"

// requestAudience is the audience of every authorization request.
const requestAudience = "nats-authorization-request"

// refusal is why a request was refused. code is bounded (PostgREST's and
// authd's error codes, and a few of the callout's own), for metrics;
// message goes into the response, which nats-server logs — the client
// only sees "Authorization Violation". Neither ever holds a credential.
type refusal struct {
	code, message string
	// cause is an internal failure, logged and never sent.
	cause error
}

// decision is what one request came to.
type decision struct {
	method string
	// who names the client for the log: the username tried, the API key's
	// id (the public part) or the token's user; never a secret.
	who string
	id  identity.Identity
	// workload is who a workload token names (method k8s): verified when
	// the request is allowed, only claimed when it is refused.
	workload *workload.Identity
	deny     *refusal
}

// answer decides one request and responds. Every request gets a response
// (an empty one when it cannot even be read), so that nats-server never
// waits out its auth timeout on authd's account.
func (s *Service) answer(m *nats.Msg, received time.Time) {
	req, serverXKey, err := s.readRequest(m)
	if err != nil {
		s.metrics.observe(methodNone, "bad_request", time.Since(received))
		s.log.Error("nats auth request unreadable; refused", "err", err)
		_ = m.Respond(nil)
		return
	}
	if req.Subject != s.issuerPub && req.Subject != s.account {
		// The server will not accept this service's signature: say why
		// where an operator looks, and answer anyway so the refusal is
		// immediate.
		s.log.Error("nats auth request names another issuer: auth_callout.issuer must be the public key of AUTHD_NATS_ISSUER_SEED_FILE",
			"request_issuer", req.Subject, "issuer", s.issuerPub)
	}

	ctx, cancel := context.WithDeadline(context.Background(), s.deadline(req, received))
	defer cancel()
	d := s.decide(ctx, req)
	var userJWT string
	if d.deny == nil {
		userJWT, d.deny = s.userJWT(ctx, req, d)
	}

	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	if d.deny != nil {
		resp.Error = "authd: " + d.method + ": " + d.deny.message
	} else {
		resp.Jwt = userJWT
	}
	if s.operator && s.issuerPub != s.account {
		resp.IssuerAccount = s.account // signed with one of the account's signing keys
	}
	out, err := s.encodeResponse(resp, serverXKey)
	if err != nil {
		s.metrics.observe(d.method, "PT500", time.Since(received))
		s.log.Error("nats auth response not encoded; refused", "err", err)
		_ = m.Respond(nil)
		return
	}
	// Recorded before the answer, so a client told the outcome finds it
	// in the log and the metrics.
	s.record(req, d, time.Since(received))
	if err := m.Respond(out); err != nil {
		s.log.Warn("nats auth response not sent", "err", err)
	}
}

// readRequest opens (when sealed) and decodes the request, and checks its
// signature, audience and expiry. serverXKey is the server's public curve
// key when the request was sealed, for sealing the answer back.
func (s *Service) readRequest(m *nats.Msg) (req *jwt.AuthorizationRequestClaims, serverXKey string, err error) {
	data := m.Data
	if serverXKey = m.Header.Get(xkeyHeader); serverXKey != "" {
		if s.xkey == nil {
			return nil, "", errors.New("the request is encrypted (auth_callout.xkey is set) but AUTHD_NATS_XKEY_SEED_FILE is not")
		}
		if data, err = s.xkey.Open(m.Data, serverXKey); err != nil {
			return nil, "", fmt.Errorf("decrypt request (is auth_callout.xkey the public key of AUTHD_NATS_XKEY_SEED_FILE?): %w", err)
		}
	}
	// The signature is checked against the server key the request names.
	req, err = jwt.DecodeAuthorizationRequestClaims(string(data))
	if err != nil {
		return nil, "", fmt.Errorf("decode request: %w", err)
	}
	vr := jwt.CreateValidationResults()
	req.Validate(vr)
	if errs := vr.Errors(); len(errs) > 0 {
		return nil, "", fmt.Errorf("invalid request: %w", errs[0])
	}
	switch {
	case req.Audience != requestAudience:
		return nil, "", fmt.Errorf("request audience is %q, want %q", req.Audience, requestAudience)
	case serverXKey != "" && req.Server.XKey != serverXKey:
		// The header is not signed; the claim is.
		return nil, "", errors.New("request xkey header does not match its signed server xkey")
	}
	return req, serverXKey, nil
}

// deadline is when to give up deciding: Timeout after the request arrived,
// or the request's expiry (nats-server's auth timeout) if sooner.
func (s *Service) deadline(req *jwt.AuthorizationRequestClaims, received time.Time) time.Time {
	d := received.Add(s.timeout)
	if req.Expires > 0 {
		if exp := time.Unix(req.Expires, 0); exp.Before(d) {
			d = exp
		}
	}
	return d
}

// decide finds who the client is, from the credentials it presented:
//
//   - auth_token starting "authd_": an API key (IdentifyAPIKey);
//   - an auth_token whose iss is a trusted workload issuer: a workload
//     (a Kubernetes service-account token), when Config.Workloads is set;
//   - any other auth_token: an authd access token (IdentifyToken: no
//     database, no bcrypt);
//   - user "apikey" with a password: the password is an API key;
//   - user and password: /rpc/login's check (IdentifyPassword), throttled
//     per username and per client host.
func (s *Service) decide(ctx context.Context, req *jwt.AuthorizationRequestClaims) decision {
	o := req.ConnectOptions
	var (
		d   decision
		err error
	)
	switch {
	case strings.HasPrefix(o.Token, token.APIKeyPrefix):
		d.method, d.who = methodAPIKey, apiKeyName(o.Token)
		d.id, err = s.auth.IdentifyAPIKey(ctx, o.Token)
	case o.Token != "" && s.decideWorkload(ctx, o.Token, &d):
	case o.Token != "":
		d.method = methodToken
		d.id, err = s.auth.IdentifyToken(ctx, o.Token)
		d.who = d.id.User
	case o.Username == APIKeyUser:
		d.method, d.who = methodAPIKey, apiKeyName(o.Password)
		d.id, err = s.auth.IdentifyAPIKey(ctx, o.Password)
	case o.Username != "":
		d.method, d.who = methodPassword, o.Username
		d.id, err = s.auth.IdentifyPassword(ctx, o.Username, o.Password, req.ClientInformation.Host)
	default:
		d.method = methodNone
		d.deny = &refusal{code: "no_credentials", message: "no credentials: connect with an authd access token or API key as the token, or with a user and password"}
		return d
	}
	if err != nil {
		d.deny = refusalFrom(err)
		return d
	}
	if d.deny != nil {
		return d
	}
	// Verification allows PostgREST's 30 s of clock skew; a NATS user
	// cannot be issued already expired.
	if !d.id.Expires.After(time.Now().Truncate(time.Second)) {
		d.deny = &refusal{code: "PGRST303", message: "JWT expired"}
	}
	return d
}

// decideWorkload fills d and returns true when raw is a workload token
// (whether it passes or not); false when it is none, and is authd's to
// check.
func (s *Service) decideWorkload(ctx context.Context, raw string, d *decision) bool {
	if s.workloads == nil {
		return false
	}
	t, err := s.workloads.VerifyToken(ctx, raw)
	if errors.Is(err, workload.ErrNotWorkload) {
		return false
	}
	d.method, d.workload = methodK8s, &t.Identity
	if t.Namespace != "" && t.ServiceAccount != "" {
		d.who = WorkloadUser(t.Identity)
	}
	if err != nil {
		d.deny = refusalFrom(err)
		return true
	}
	d.id = identity.Identity{User: d.who, Expires: t.Expires}
	return true
}

// WorkloadUser is the NATS user name of a workload: Kubernetes' own name
// for a service account (system:serviceaccount:NAMESPACE:NAME), which no
// authd user name is mistaken for in logs and connz, since it says what
// it is.
func WorkloadUser(id workload.Identity) string {
	return "system:serviceaccount:" + id.Namespace + ":" + id.ServiceAccount
}

// refusalFrom turns an Identify error into a refusal: the one place an
// identity kind becomes a NATS answer. The client is only told
// "Authorization Violation" whatever the kind; the code and message go
// into the response for nats-server's log, and a failure on authd's side
// (shed load included) is logged here with its cause.
func refusalFrom(err error) *refusal {
	var (
		e  *identity.Error
		ae *workload.AnnotationError
	)
	if errors.As(err, &ae) {
		// The ServiceAccount's own mistake, not authd's: said as it is.
		return &refusal{code: "bad_annotation", message: ae.Error()}
	}
	if !errors.As(err, &e) {
		return &refusal{code: "PT500", message: "Internal server error", cause: err}
	}
	r := &refusal{code: e.Code, message: e.Message}
	switch e.Kind {
	case identity.Busy, identity.Unavailable, identity.Internal:
		r.cause = err
	}
	return r
}

// apiKeyName is the public id of an API key, for the log, or "" if it is
// not one.
func apiKeyName(plain string) string {
	if id, _, ok := token.ParseAPIKey(plain); ok {
		return "apikey:" + id
	}
	return ""
}

// userJWT issues the NATS user for d: the role's permissions (a
// workload's, from WorkloadPermissions), expiring with the identity's
// token, placed in the target account.
func (s *Service) userJWT(ctx context.Context, req *jwt.AuthorizationRequestClaims, d decision) (string, *refusal) {
	id := d.id
	var (
		p   store.NATSPermissions
		err error
	)
	if d.workload != nil {
		p, err = s.workloadPerms.Permissions(ctx, *d.workload)
	} else {
		p, err = s.perms.get(ctx, id.Role, s.auth.NATSPermissions)
	}
	if err != nil {
		return "", refusalFrom(err)
	}
	// A role marked require_mfa (authd nats require-mfa) is for sessions
	// that presented a second factor: its users' passwords, its API keys
	// and aal1 tokens are refused.
	if p.RequireMFA && d.workload == nil && id.AAL != token.AAL2 {
		return "", &refusal{code: "mfa_required", message: fmt.Sprintf("role %q requires a second factor: "+
			"connect with the access token of a session verified with /rpc/mfa_verify (aal2)", id.Role)}
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Name = id.User
	// Never later than the token: nats-server disconnects the client at
	// this time, and a client that reconnects must present a fresh token.
	uc.Expires = id.Expires.Unix()
	switch {
	case !s.operator:
		uc.Audience = s.account // config mode: placement by audience
	case s.issuerPub != s.account:
		uc.IssuerAccount = s.account // operator mode, signed by a signing key
	}
	uc.Pub.Allow.Add(p.PubAllow...)
	uc.Pub.Deny.Add(p.PubDeny...)
	uc.Sub.Allow.Add(p.SubAllow...)
	uc.Sub.Deny.Add(p.SubDeny...)
	// A user JWT without an allow list allows everything (nats-server
	// applies no publish or subscribe permission at all), while a role
	// without grants must be allowed nothing: deny all instead. Answering
	// requests (allow_responses) still works under a publish deny.
	if len(p.PubAllow) == 0 {
		uc.Pub.Deny = jwt.StringList{">"}
	}
	if len(p.SubAllow) == 0 {
		uc.Sub.Deny = jwt.StringList{">"}
	}
	if s.operator {
		// Users land in the callout account, where nats-server publishes
		// the authorization requests (every connecting client's token or
		// password): a grant of ">" must not reach them. nats-server only
		// denies publishing there.
		uc.Sub.Deny.Add(Subject)
	}
	if p.AllowResponses {
		// 0 is nats-server's default: 1 response within 2 minutes.
		uc.Resp = &jwt.ResponsePermission{MaxMsgs: p.ResponseMax, Expires: p.ResponseTTL}
	}
	signed, err := uc.Encode(s.issuer)
	if err != nil {
		return "", &refusal{code: "PT500", message: "Internal server error", cause: fmt.Errorf("sign NATS user JWT: %w", err)}
	}
	return signed, nil
}

// encodeResponse signs resp, and seals it to the server's curve key when
// the request was sealed.
func (s *Service) encodeResponse(resp *jwt.AuthorizationResponseClaims, serverXKey string) ([]byte, error) {
	signed, err := resp.Encode(s.issuer)
	if err != nil {
		return nil, fmt.Errorf("sign response: %w", err)
	}
	if serverXKey == "" {
		return []byte(signed), nil
	}
	sealed, err := s.xkey.Seal([]byte(signed), serverXKey)
	if err != nil {
		return nil, fmt.Errorf("encrypt response: %w", err)
	}
	return sealed, nil
}

// record counts and logs an answered request. Refusals are logged at info
// with their reason (internal failures at error, with their cause), so an
// operator can tell a wrong password from an expired token without the
// NATS server's log; allowed connections only at debug, since a deploy
// reconnects every client at once. No token, password or key is logged.
func (s *Service) record(req *jwt.AuthorizationRequestClaims, d decision, took time.Duration) {
	ci := req.ClientInformation
	attrs := []slog.Attr{
		slog.String("method", d.method),
		slog.String("client_host", ci.Host),
		slog.Uint64("client_id", ci.ID),
		slog.String("server_id", req.Server.ID),
		slog.Float64("latency_ms", float64(took.Microseconds())/1000),
	}
	if ci.Name != "" {
		attrs = append(attrs, slog.String("client_name", ci.Name))
	}
	if d.who != "" {
		attrs = append(attrs, slog.String("user", d.who))
	}
	if w := d.workload; w != nil {
		// On a refusal these are what the token claims, unverified.
		attrs = append(attrs, slog.String("namespace", w.Namespace), slog.String("service_account", w.ServiceAccount))
		if w.Pod != "" {
			attrs = append(attrs, slog.String("pod", w.Pod))
		}
		if w.Issuer != "" {
			attrs = append(attrs, slog.String("issuer", w.Issuer))
		}
	}
	if d.deny == nil {
		s.metrics.observe(d.method, "", took)
		attrs = append(attrs, slog.String("role", d.id.Role), slog.Time("expires", d.id.Expires))
		s.log.LogAttrs(context.Background(), slog.LevelDebug, "nats auth allowed", attrs...)
		return
	}
	s.metrics.observe(d.method, d.deny.code, took)
	attrs = append(attrs, slog.String("code", d.deny.code), slog.String("reason", d.deny.message))
	level := slog.LevelInfo
	if d.deny.cause != nil {
		level = slog.LevelError
		attrs = append(attrs, slog.Any("err", d.deny.cause))
	}
	s.log.LogAttrs(context.Background(), level, "nats auth refused", attrs...)
}
