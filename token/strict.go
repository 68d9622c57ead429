package token

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Errors for what golang-jwt lets through and authd refuses. The JSON of
// the header and payload is checked before the signature: a token that
// two parsers could read differently is refused whoever signed it.
var (
	// ErrDuplicateKey reports a member name twice in one JSON object of
	// the header or payload. encoding/json keeps the last value, another
	// verifier (PostgREST, a gateway) may keep the first: the same token
	// must never mean two roles (RFC 7519 §4 allows refusing it).
	ErrDuplicateKey = errors.New("duplicate key in the JWT header or payload")
	// ErrCritical reports a crit header. authd understands no extension,
	// so RFC 7515 §4.1.11 says it must refuse the token.
	ErrCritical = errors.New("JWT header has crit, and authd understands no extension")
	// ErrNotNumber reports an exp, nbf or iat that is not a JSON number.
	// golang-jwt accepts "exp":"1800000000"; PostgREST refuses it, and the
	// two must agree on which tokens are valid.
	ErrNotNumber = errors.New("JWT time claim is not a number")
)

// timeClaims must be JSON numbers when present.
var timeClaims = map[string]bool{"exp": true, "nbf": true, "iat": true}

// checkJSON scans the header and payload of raw for duplicate keys (at any
// depth), a crit header and time claims that are not numbers. What does
// not even decode is left to the parser, which reports it as malformed.
func checkJSON(raw string) error {
	head, rest, ok := strings.Cut(raw, ".")
	if !ok {
		return nil
	}
	payload, _, ok := strings.Cut(rest, ".")
	if !ok {
		return nil
	}
	err := scanSegment(head, func(name string, _ json.Token) error {
		if name == "crit" {
			return ErrCritical
		}
		return nil
	})
	if err != nil {
		return err
	}
	return scanSegment(payload, func(name string, first json.Token) error {
		if _, isNumber := first.(json.Number); timeClaims[name] && !isNumber {
			return fmt.Errorf("%w: %q", ErrNotNumber, name)
		}
		return nil
	})
}

// scanSegment decodes one base64url segment holding a JSON object and
// calls member with each top-level name and the first token of its value.
// It reports duplicate keys and member's errors; anything else (bad
// base64, bad JSON, not an object) is nil, for the parser to report.
func scanSegment(seg string, member func(name string, first json.Token) error) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	err = scanMembers(dec, member)
	if errors.Is(err, ErrDuplicateKey) || errors.Is(err, ErrCritical) || errors.Is(err, ErrNotNumber) {
		return err
	}
	return nil
}

// scanMembers reads the members of an object whose '{' was read, up to
// and including its '}', calling member (when not nil) for each.
func scanMembers(dec *json.Decoder, member func(name string, first json.Token) error) error {
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := t.(string)
		if seen[name] {
			return fmt.Errorf("%w: %q", ErrDuplicateKey, name)
		}
		seen[name] = true
		first, err := dec.Token()
		if err != nil {
			return err
		}
		if member != nil {
			if err := member(name, first); err != nil {
				return err
			}
		}
		if err := scanRest(dec, first); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

// scanRest reads the rest of a value whose first token was first.
func scanRest(dec *json.Decoder, first json.Token) error {
	switch first {
	case json.Delim('{'):
		return scanMembers(dec, nil)
	case json.Delim('['):
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return err
			}
			if err := scanRest(dec, t); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return nil
}
