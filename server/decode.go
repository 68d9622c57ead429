package server

import (
	"bytes"
	"cmp"
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
// application/json or missing, or an HTML form, in UTF-8. It returns an
// error for anything else, for an argument given twice, and PGRST202
// unless the argument names are exactly required plus any of optional.
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
	var (
		args rpcArgs
		bare map[string]bool
	)
	switch kind {
	case kindForm:
		args, bare, err = parseFormArgs(raw)
	default:
		args, err = parseJSONArgs(raw)
	}
	if err != nil {
		return nil, err
	}
	return args, checkArgNames(args, bare, fn, required, optional)
}

type bodyFormat int

const (
	kindJSON bodyFormat = iota
	kindForm
)

// bodyKind maps a Content-Type to the body format. PostgREST reads a
// missing Content-Type as JSON; curl scripts rely on that. Bodies are read
// as UTF-8 (JSON's only encoding, and what browsers send forms in), so a
// body declared in another charset is refused rather than misread.
func bodyKind(contentType string) (bodyFormat, error) {
	if strings.TrimSpace(contentType) == "" {
		return kindJSON, nil
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, errMediaType(contentType)
	}
	var kind bodyFormat
	switch mt {
	case "application/json":
		kind = kindJSON
	case "application/x-www-form-urlencoded":
		kind = kindForm
	default:
		return 0, errMediaType(mt)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return 0, errMediaType(cmp.Or(mime.FormatMediaType(mt, map[string]string{"charset": strings.ToLower(cs)}), mt))
	}
	return kind, nil
}

// parseJSONArgs reads a JSON object into text arguments. An empty body is
// {} (PostgREST's rule). Strings are taken as they are, null as absent,
// and other JSON values as their JSON text, as PostgREST casts them. A key
// given twice is refused: JSON leaves its meaning open (RFC 8259 §4), so
// decoders differ (Go's and PostgreSQL's jsonb keep the last, some keep
// the first or refuse), and a check and a use that read different ones is
// how a smuggled argument gets through.
func parseJSONArgs(raw []byte) (rpcArgs, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return rpcArgs{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errInvalidBody()
	}
	args := rpcArgs{}
	seen := map[string]bool{}
	repeated := ""
	for dec.More() {
		tok, err := dec.Token()
		k, isKey := tok.(string)
		if err != nil || !isKey {
			return nil, errInvalidBody()
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errInvalidBody()
		}
		if seen[k] && repeated == "" {
			repeated = k
		}
		seen[k] = true
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
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errInvalidBody()
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errInvalidBody() // trailing data after the object
	}
	// Reported once the whole body is known to be JSON, so that broken
	// JSON is always "invalid json".
	if repeated != "" {
		return nil, errRepeatedArg("Invalid json: repeated key", argName(repeated, false))
	}
	return args, nil
}

// parseFormArgs reads an urlencoded form. A repeated key is ambiguous for
// a function that takes one value, so it is refused. bare holds the keys
// of pieces without "=": those are values sent where a field belongs
// (JSON posted as a form, a token as the whole body), never named in an
// error.
func parseFormArgs(raw []byte) (args rpcArgs, bare map[string]bool, err error) {
	vals, err := url.ParseQuery(string(raw))
	if err != nil {
		return nil, nil, &Error{Status: http.StatusBadRequest, Code: "PGRST102", Message: "Invalid form data"}
	}
	bare = map[string]bool{}
	for piece := range strings.SplitSeq(string(raw), "&") {
		if !strings.Contains(piece, "=") {
			k, _ := url.QueryUnescape(piece) // ParseQuery has unescaped it already
			bare[k] = true
		}
	}
	args = make(rpcArgs, len(vals))
	for k, vs := range vals {
		if len(vs) != 1 {
			return nil, nil, errRepeatedArg("Invalid form data: repeated field", argName(k, bare[k]))
		}
		args[k] = vs[0]
	}
	return args, bare, nil
}

// checkArgNames answers like PostgREST when the argument names do not
// match the function's parameters: 404 PGRST202, names sorted. bare are
// form keys sent without a value (see parseFormArgs).
func checkArgNames(args rpcArgs, bare map[string]bool, fn string, required, optional []string) error {
	isParam := func(k string) bool { return slices.Contains(required, k) || slices.Contains(optional, k) }
	ok := true
	for k := range args {
		ok = ok && isParam(k)
	}
	for _, k := range required {
		_, given := args[k]
		ok = ok && given
	}
	if ok {
		return nil
	}
	got := make([]string, 0, len(args))
	for k := range args {
		if isParam(k) {
			got = append(got, k)
		} else {
			got = append(got, argName(k, bare[k]))
		}
	}
	sort.Strings(got)
	return errUnknownArgs(fn, got, required)
}

// maxArgName is PostgreSQL's longest identifier (NAMEDATALEN - 1).
const maxArgName = 63

// argName is how an error names an argument the client sent that the
// function does not take. PostgREST repeats such names as they came; but
// what comes where a name belongs is at times a value — JSON posted as a
// form, a pasted token, the rest of a password with an unescaped "&" — and
// an error must never repeat a password or a token. So a key is named only
// if it has the shape of a parameter name (an unquoted PostgreSQL
// identifier: lowercase letters, digits and "_", at most 63 bytes) and was
// not a bare form piece; anything else is "?".
func argName(k string, bare bool) string {
	if bare || k == "" || len(k) > maxArgName || (k[0] >= '0' && k[0] <= '9') {
		return "?"
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return "?"
		}
	}
	return k
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
