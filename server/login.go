package server

import (
	"context"
	"errors"

	"github.com/labstack/echo/v4"

	"authd/store"
	"authd/token"
)

// handleLogin is POST /rpc/login {"user_", "pass"}: SuperStack's
// auth.login, answered from Go.
func (s *Server) handleLogin() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		// An HTML form post is a CORS "simple request": any site could log
		// a visitor into an account of the attacker's choosing. Browsers
		// say where the request comes from; believe them.
		if kind, _ := bodyKind(r.Header.Get("Content-Type")); kind == kindForm &&
			r.Header.Get("Sec-Fetch-Site") == "cross-site" {
			return errCrossSite()
		}
		args, err := decodeArgs(r, "auth.login", []string{"pass", "user_"}, nil)
		if err != nil {
			return err
		}
		ctx := r.Context()
		u, err := s.checkPassword(ctx, args["user_"], args["pass"], c.RealIP())
		if err != nil {
			return err
		}
		refresh, refreshHash, err := token.NewRefresh()
		if err != nil {
			return errInternal(err)
		}
		g, err := s.db.StartSession(ctx, u.Username, refreshHash, s.cfg.RefreshTTL)
		if err != nil {
			return errInternal(err)
		}
		g.Role = u.Role
		return s.respondTokens(c, g, refresh)
	}
}

// checkPassword is the one password check, for /rpc/login and for NATS
// clients: throttling per username and client, bcrypt in a bounded slot,
// a dummy compare for unknown users, the role check and the hash upgrade.
// Its errors are *Error, ready to answer with.
func (s *Server) checkPassword(ctx context.Context, username, password, client string) (u store.User, err error) {
	defer func() { s.metrics.loginResult(err) }()
	// Brute-force protection: refuse before any bcrypt work when this
	// username or this client has failed too often. Only failures count,
	// so a user who knows their password is never slowed.
	now := s.cfg.Now()
	if d := max(s.failuresByUser.wait(username, now), s.failuresByIP.wait(client, now)); d > 0 {
		return store.User{}, errTooManyLogins(d)
	}
	u, err = s.db.User(ctx, username)
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, errInternal(err)
	}
	// Compare against a dummy hash for an unknown user, so that the
	// answer takes as long as for a wrong password.
	hash := s.dummyHash
	if found {
		hash = u.PasswordHash
	}
	var ok bool
	if err := s.bcrypt.run(ctx, func() { ok = store.CheckPassword(hash, password) }); err != nil {
		return store.User{}, err
	}
	if !ok || !found {
		now := s.cfg.Now()
		s.failuresByUser.take(username, now)
		s.failuresByIP.take(client, now)
		return store.User{}, errInvalidLogin()
	}
	if !u.RoleExists {
		return store.User{}, errRoleMissing(u.Role)
	}
	if store.NeedsRehash(u.PasswordHash, s.cfg.BcryptCost) {
		s.upgradeHash(ctx, u, password)
	}
	return u, nil
}

// upgradeHash re-hashes a password stored below the configured cost (such
// as SuperStack's cost-6 pgcrypto hashes) now that the plaintext is at hand.
// A failure only delays the upgrade to the next login.
func (s *Server) upgradeHash(ctx context.Context, u store.User, password string) {
	var (
		h       string
		hashErr error
	)
	err := s.bcrypt.run(ctx, func() { h, hashErr = store.HashPassword(password, s.cfg.BcryptCost) })
	if err == nil {
		err = hashErr
	}
	if err == nil {
		err = s.db.UpgradePasswordHash(ctx, u.Username, u.PasswordHash, h)
	}
	if err != nil {
		s.log.WarnContext(ctx, "password hash upgrade failed", "user", u.Username, "err", err)
		return
	}
	s.log.InfoContext(ctx, "password hash upgraded", "user", u.Username, "cost", s.cfg.BcryptCost)
}
