package identity

import (
	"errors"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"authd/token"
)

// errInvalidToken words a verification failure as PostgREST does, so that
// clients see the same message whether the gateway or PostgREST refused.
func errInvalidToken(raw string, err error) *Error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		if n := strings.Count(raw, ".") + 1; n != 3 {
			return invalidToken("PGRST301", fmt.Sprintf("Expected 3 parts in JWT; got %d", n), nil)
		}
		return invalidToken("PGRST301", "JWT cryptographic operation failed", nil)
	case errors.Is(err, token.ErrAlgorithm):
		return invalidToken("PGRST301", "Wrong or unsupported encoding algorithm", nil)
	case errors.Is(err, token.ErrKeyID), errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalidToken("PGRST301", "No suitable key or wrong key type", ptr("None of the keys was able to decode the JWT"))
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalidToken("PGRST303", "JWT expired", nil)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalidToken("PGRST303", "JWT not yet valid", nil)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalidToken("PGRST303", "JWT issued at future", nil)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalidToken("PGRST303", "JWT not in audience", nil)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalidToken("PGRST303", "JWT not issued by this server (iss)", nil)
	case errors.Is(err, token.ErrLifetime):
		return invalidToken("PGRST303", "JWT lifetime is longer than this server allows", nil)
	case errors.Is(err, token.ErrNotNumber):
		return invalidToken("PGRST303", "The JWT 'exp', 'nbf' and 'iat' claims must be numbers", nil)
	case errors.Is(err, token.ErrDuplicateKey):
		return invalidToken("PGRST301", "JWT header or payload has a duplicate key", nil)
	case errors.Is(err, token.ErrCritical):
		return invalidToken("PGRST301", "JWT header has a 'crit' parameter, which is not supported", nil)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalidToken("PGRST303", "JWT has no 'exp' claim", nil)
	}
	return invalidToken("PGRST303", "Parsing claims failed", nil)
}

// TokenRefusal words a failed verification of a JWT, authd's own or a
// trusted external issuer's (natsauth/workload), as errInvalidToken does,
// so every door refuses a bad token in the same words.
func TokenRefusal(raw string, err error) *Error { return errInvalidToken(raw, err) }
