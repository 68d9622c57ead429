package server

import (
	"context"
	"time"
)

// Identity is who a credential names, and the JWT to hand on for them:
// what /auth/verify tells a gateway, and what a NATS callout turns into
// permissions. The same rules decide it for every front door.
type Identity struct {
	User    string
	Role    string
	Token   string    // the access JWT to forward
	Expires time.Time // when Token expires
}

// IdentifyToken checks an access token: pinned algorithms, the key its kid
// names, expiry with PostgREST's 30 s leeway, audience. No database work;
// tokens already verified under the current keys are remembered. Errors
// are 401 *Error in PostgREST's words.
func (s *Server) IdentifyToken(raw string) (Identity, error) {
	if _, err := checkTokenSize(raw); err != nil {
		return Identity{}, err
	}
	gen := s.tokens.Generation()
	v, ok := s.verified.get(raw, gen, s.cfg.Now())
	if !ok {
		claims, err := s.tokens.Verify(raw)
		if err != nil {
			return Identity{}, errInvalidToken(raw, err)
		}
		user := claims.Username
		if user == "" {
			user = claims.Subject
		}
		// Verify requires exp, so ExpiresAt is set.
		v = newVerified(user, claims.Role, claims.ExpiresAt.Time, gen)
		s.verified.put(raw, v)
	}
	if v.role == "" {
		return Identity{}, invalidToken("PGRST303", "JWT has no role claim", nil)
	}
	return Identity{User: v.user, Role: v.role, Token: raw, Expires: time.Unix(v.expires, 0)}, nil
}

// IdentifyPassword checks a username and password with every rule of
// /rpc/login (throttling per username and per client, bcrypt in a bounded
// slot, equal time for unknown users, the role check) but opens no
// session: the identity carries an access token of the usual lifetime.
func (s *Server) IdentifyPassword(ctx context.Context, username, password, client string) (Identity, error) {
	u, err := s.checkPassword(ctx, username, password, client)
	if err != nil {
		return Identity{}, err
	}
	tok, exp, err := s.tokens.Issue(u.Username, u.Role, "")
	if err != nil {
		return Identity{}, errInternal(err)
	}
	return Identity{User: u.Username, Role: u.Role, Token: tok, Expires: exp}, nil
}
