package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// schemaName is the only schema authd "exposes": SuperStack clients send
// Content-Profile: auth because auth was not PostgREST's first schema.
const schemaName = "auth"

// bodyLimit caps RPC bodies. A login is a username and a password; 8 KiB
// is generous and keeps a flood of large bodies cheap to refuse.
const bodyLimit = 8 << 10

const jsonType = "application/json; charset=utf-8"

// checkProfile accepts a request without Content-Profile or with "auth",
// as PostgREST does when auth is among its exposed schemas.
func checkProfile(h http.Header) error {
	p := strings.TrimSpace(h.Get("Content-Profile"))
	if p == "" || p == schemaName {
		return nil
	}
	return errSchema(p)
}

// rpcArgs are the named arguments of an RPC call, as text, as PostgREST
// passes them to a function.
type rpcArgs map[string]string

// decodeArgs reads an RPC body as PostgREST does: JSON when Content-Type is
// application/json or missing, or an HTML form. It returns an error for
// anything else, and PGRST202 unless the argument names are exactly
// required plus any of optional.
func decodeArgs(r *http.Request, fn string, required, optional []string) (rpcArgs, error) {
	if err := checkProfile(r.Header); err != nil {
		return nil, err
	}
	kind, err := bodyKind(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, bodyLimit+1))
	if err != nil {
		return nil, errInvalidBody()
	}
	if len(raw) > bodyLimit {
		return nil, errTooLarge(bodyLimit)
	}
	var args rpcArgs
	switch kind {
	case kindForm:
		args, err = parseFormArgs(raw)
	default:
		args, err = parseJSONArgs(raw)
	}
	if err != nil {
		return nil, err
	}
	return args, checkArgNames(args, fn, required, optional)
}

type bodyFormat int

const (
	kindJSON bodyFormat = iota
	kindForm
)

// bodyKind maps a Content-Type to the body format. PostgREST reads a
// missing Content-Type as JSON; curl scripts rely on that.
func bodyKind(contentType string) (bodyFormat, error) {
	if strings.TrimSpace(contentType) == "" {
		return kindJSON, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, errMediaType(contentType)
	}
	switch mt {
	case "application/json":
		return kindJSON, nil
	case "application/x-www-form-urlencoded":
		return kindForm, nil
	}
	return 0, errMediaType(mt)
}

// parseJSONArgs reads a JSON object into text arguments. An empty body is
// {} (PostgREST's rule). Strings are taken as they are, null as absent,
// and other JSON values as their JSON text, as PostgREST casts them.
func parseJSONArgs(raw []byte) (rpcArgs, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return rpcArgs{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, errInvalidBody()
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errInvalidBody() // trailing data after the object
	}
	args := make(rpcArgs, len(obj))
	for k, v := range obj {
		var s string
		switch {
		case bytes.Equal(v, []byte("null")):
			continue
		case json.Unmarshal(v, &s) == nil:
			args[k] = s
		default:
			args[k] = string(v)
		}
	}
	return args, nil
}

// parseFormArgs reads an urlencoded form. A repeated key is ambiguous for
// a function that takes one value, so it is refused.
func parseFormArgs(raw []byte) (rpcArgs, error) {
	vals, err := url.ParseQuery(string(raw))
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: "PGRST102", Message: "Invalid form data"}
	}
	args := make(rpcArgs, len(vals))
	for k, vs := range vals {
		if len(vs) != 1 {
			return nil, &Error{Status: http.StatusBadRequest, Code: "PGRST102", Message: "Invalid form data: repeated field " + k}
		}
		args[k] = vs[0]
	}
	return args, nil
}

// checkArgNames answers like PostgREST when the argument names do not
// match the function's parameters: 404 PGRST202, names sorted.
func checkArgNames(args rpcArgs, fn string, required, optional []string) error {
	for k := range args {
		if !slices.Contains(required, k) && !slices.Contains(optional, k) {
			return errUnknownArgs(fn, sortedKeys(args), required)
		}
	}
	for _, k := range required {
		if _, ok := args[k]; !ok {
			return errUnknownArgs(fn, sortedKeys(args), required)
		}
	}
	return nil
}

func sortedKeys(args rpcArgs) []string {
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// wantsRepresentation reports whether Prefer asks for the tokens in the
// body (return=representation), for curl, CLIs and mobile apps.
func wantsRepresentation(h http.Header) bool {
	for _, line := range h.Values("Prefer") {
		for _, pref := range strings.Split(line, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(pref), "=")
			if strings.EqualFold(strings.TrimSpace(k), "return") && strings.EqualFold(strings.TrimSpace(v), "representation") {
				return true
			}
		}
	}
	return false
}

// bearerToken returns the token of an "Authorization: Bearer" header; the
// scheme is case-insensitive, as in PostgREST.
func bearerToken(h http.Header) string {
	scheme, tok, ok := strings.Cut(h.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}
