package server

import (
	"errors"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"authd/identity"
)

// FuzzDecodeArgs feeds arbitrary bodies, content types and profiles to the
// RPC body parser: it must never panic, must refuse with a 4xx *Error, and
// must never accept an argument the function does not take.
func FuzzDecodeArgs(f *testing.F) {
	f.Add("application/json", "auth", `{"user_": "alice", "pass": "secret"}`)
	f.Add("", "", `{"user_": "alice", "pass": "secret"}`)
	f.Add("application/x-www-form-urlencoded", "", "user_=alice&pass=s%20e")
	f.Add("application/json; charset=utf-8", "auth", `{"user_": 1, "pass": null}`)
	f.Add("text/plain", "", "hello")
	f.Add("application/json", "api", `{}`)
	f.Add("multipart/form-data; boundary=x", "", "--x--")
	f.Add("application/json", "", `[1,2]`)
	f.Add("application/json", "", `{"user_":"a"} {"pass":"b"}`)
	f.Add("application/json;;", "", ``)
	// Text PostgreSQL cannot hold, repeated arguments, charsets, and values
	// where names belong (issue 12).
	f.Add("application/json", "", `{"user_": "alice\u0000", "pass": "x"}`)
	f.Add("application/json", "", "{\"user_\": \"ali\xffce\", \"pass\": \"x\"}")
	f.Add("application/x-www-form-urlencoded", "", "user_=ali%FFce&pass=x")
	f.Add("application/x-www-form-urlencoded", "", "user_=alice%00&pass=x")
	f.Add("application/json", "", `{"user_": "bob", "user_": "alice", "pass": "x"}`)
	f.Add("application/json", "", `{"user_": "alice", "pass": null, "pass": "x"}`)
	f.Add("application/json", "", `{"user_": {"a": 1, "a": 2}, "pass": "x"}`)
	f.Add("application/x-www-form-urlencoded", "", "user_=bob&user_=alice&pass=x")
	f.Add("application/json; charset=utf-16", "", `{"user_": "alice", "pass": "x"}`)
	f.Add("application/json; charset=UTF8", "", `{"user_": "alice", "pass": "x"}`)
	f.Add("application/x-www-form-urlencoded; charset=\"ISO-8859-1\"", "", "user_=alice&pass=x")
	f.Add("application/x-www-form-urlencoded", "", `{"user_": "alice", "pass": "hunter2"}`)
	f.Add("application/x-www-form-urlencoded", "", "user_=alice&pass=Tr0ub&4dor=3")
	f.Add("application/x-www-form-urlencoded", "", "Zm9vYmFy&Zm9vYmFy")
	f.Add("application/json", "", `{"user_": "alice", "pass": "x", "Zm9v-YmFy": 1}`)
	f.Fuzz(func(t *testing.T, contentType, profile, body string) {
		r, err := http.NewRequest(http.MethodPost, "/rpc/login", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("Content-Profile", profile)
		args, err := decodeArgs(r, "auth.login", []string{"pass", "user_"}, nil)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 {
				t.Fatalf("got %v, want a 4xx *Error", err)
			}
			if e.Code == "" || e.Message == "" || !utf8.ValidString(e.Code) {
				t.Fatalf("error without code or message: %+v", e)
			}
			// A PGRST202 names only possible parameter names, never a
			// value sent where a name belongs.
			if e.Code == "PGRST202" {
				names, _ := strings.CutPrefix(e.Message, "Could not find the function auth.login(")
				names, _ = strings.CutSuffix(names, ") in the schema cache")
				for n := range strings.SplitSeq(names, ", ") {
					if n != "" && n != "?" && !paramName.MatchString(n) {
						t.Fatalf("PGRST202 names %q: %s", n, e.Message)
					}
				}
			}
			return
		}
		if len(args) != 2 {
			t.Fatalf("accepted %d arguments %v, want exactly user_ and pass", len(args), args)
		}
		for k := range args {
			if k != "user_" && k != "pass" {
				t.Fatalf("accepted unknown argument %q", k)
			}
		}
		// An accepted body was declared UTF-8 or not declared at all.
		if _, params, err := mime.ParseMediaType(contentType); err == nil {
			if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
				t.Fatalf("accepted charset %q", cs)
			}
		}
	})
}

// paramName is what an error may repeat of a name the client sent.
var paramName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// FuzzHeaders covers the header parsers: Prefer and Authorization.
func FuzzHeaders(f *testing.F) {
	f.Add("return=representation", "Bearer abc.def.ghi")
	f.Add("tx=commit, return=representation", "bearer x")
	f.Add("return = representation ,count=exact", "Basic dXNlcjpwYXNz")
	f.Add("return=minimal", "Bearer")
	f.Add(",,,=", " Bearer  tok ")
	f.Fuzz(func(t *testing.T, prefer, authorization string) {
		h := http.Header{"Prefer": {prefer}, "Authorization": {authorization}}
		rep := wantsRepresentation(h)
		if rep && !strings.Contains(strings.ToLower(prefer), "representation") {
			t.Fatalf("Prefer %q read as return=representation", prefer)
		}
		tok := bearerToken(h)
		if tok != "" && !strings.Contains(authorization, tok) {
			t.Fatalf("token %q is not in Authorization %q", tok, authorization)
		}
		if tok != "" && !strings.EqualFold(strings.Fields(authorization + " x")[0], "bearer") && !strings.HasPrefix(strings.ToLower(authorization), "bearer ") {
			t.Fatalf("non-Bearer Authorization %q gave token %q", authorization, tok)
		}
	})
}

// FuzzPresentedAccess covers token extraction for /auth/verify: any
// Authorization and Cookie header gives a token or a 401 in PostgREST's
// shape, never a panic or another status.
func FuzzPresentedAccess(f *testing.F) {
	f.Add("Bearer a.b.c", "")
	f.Add("", "access_token=a.b.c")
	f.Add("bearer ", "access_token=")
	f.Add("Basic x", "access_token=a.b.c; refresh_token=x")
	f.Add("Bearer "+strings.Repeat("a", 9000), "")
	f.Add("", "access_token=\"quoted\"; access_token=second")
	f.Fuzz(func(t *testing.T, authorization, cookie string) {
		r, err := http.NewRequest(http.MethodGet, "/auth/verify", nil)
		if err != nil {
			t.Fatal(err)
		}
		if authorization != "" {
			r.Header.Set("Authorization", authorization)
		}
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		raw, err := presentedAccess(r, accessCookie)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || len(e.Header["WWW-Authenticate"]) == 0 {
				t.Fatalf("got %v, want a 401 *Error with WWW-Authenticate", err)
			}
			return
		}
		if raw == "" || len(raw) > identity.MaxTokenLen {
			t.Fatalf("accepted token of length %d", len(raw))
		}
		if authorization != "" && !strings.Contains(authorization, raw) {
			t.Fatalf("token %q not from the Authorization header %q", raw, authorization)
		}
	})
}
