package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"authd/identity"
	"authd/store"
	"authd/token"
)

// The audit events of the second factor.
const (
	auditMFAEnroll = "mfa_enroll"
	auditMFAVerify = "mfa_verify"
)

// enrollmentJSON is the answer of /rpc/mfa_enroll: what an authenticator
// app needs, as a URI, its secret and a QR code.
type enrollmentJSON struct {
	FactorID string `json:"factor_id"`
	URI      string `json:"uri"`
	Secret   string `json:"secret"`
	QRCode   string `json:"qr_code"`
}

// handleMFAEnroll is POST /rpc/mfa_enroll: the caller gets a new pending
// TOTP factor (replacing a pending one), which guards nothing until
// /rpc/mfa_verify proves they have it. 409 when a verified one exists.
func (s *Server) handleMFAEnroll() echo.HandlerFunc {
	return func(c echo.Context) error {
		user, sid, _, err := s.caller(c, "auth.mfa_enroll", nil)
		if err != nil {
			return err
		}
		e, err := s.ident.EnrollMFA(c.Request().Context(), user)
		if err != nil {
			return err
		}
		s.audit(c, store.AuditEvent{Event: auditMFAEnroll, Outcome: "ok", Username: user, SessionID: sid})
		b, err := json.Marshal(enrollmentJSON{FactorID: e.FactorID.String(), URI: e.URI, Secret: e.Secret, QRCode: e.QRDataURI()})
		if err != nil {
			return errInternal(fmt.Errorf("encode enrollment: %w", err))
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.Blob(http.StatusOK, jsonType, b)
	}
}

// handleMFAVerify is POST /rpc/mfa_verify {"code"} or {"recovery_code"}:
// the caller's session presents its second factor and steps up to aal2,
// with new tokens. A code that activates a pending factor is answered
// with the factor's recovery codes (200); a login's step-up as a login is
// answered (204, or 200 with the tokens).
func (s *Server) handleMFAVerify() echo.HandlerFunc {
	return func(c echo.Context) error {
		user, sid, args, err := s.caller(c, "auth.mfa_verify", nil, "code", "recovery_code")
		if err != nil {
			return err
		}
		refresh, refreshHash, err := token.NewRefresh()
		if err != nil {
			return errInternal(err)
		}
		proof := identity.MFAProof{Code: args["code"], RecoveryCode: args["recovery_code"]}
		v, err := s.ident.VerifyMFA(c.Request().Context(), user, sid, proof, c.RealIP(),
			refreshHash, s.cfg.RefreshTTL, s.cfg.SessionLifetime)
		if err != nil {
			s.auditMFARefused(c, user, sid, err)
			return err
		}
		details := map[string]string{"method": v.Method, "activated": strconv.FormatBool(v.Activated)}
		s.audit(c, store.AuditEvent{Event: auditMFAVerify, Outcome: "ok", Username: user, SessionID: sid, Details: details})
		if v.Activated {
			return s.respondTokensWith(c, v.Grant, refresh, &mfaAnswer{RecoveryCodes: v.RecoveryCodes})
		}
		return s.respondTokens(c, v.Grant, refresh)
	}
}

// auditMFARefused records a refused second factor: failed (wrong, malformed
// or replayed code, with its reason) or throttled. The user is known: the
// access token named them.
func (s *Server) auditMFARefused(c echo.Context, user string, sid uuid.UUID, err error) {
	var e *identity.Error
	if !errors.As(err, &e) {
		return
	}
	ev := store.AuditEvent{Event: auditMFAVerify, Username: user, SessionID: sid}
	switch {
	case e.Kind == identity.Unauthorized:
		ev.Outcome = "failed"
		ev.Details = map[string]string{"reason": e.Reason}
	case e.Kind == identity.Throttled:
		ev.Outcome = "throttled"
	default:
		return
	}
	s.audit(c, ev)
}
