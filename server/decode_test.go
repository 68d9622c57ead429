package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestErrorBodiesNeverEchoValues: a password or token sent where a name
// belongs (JSON posted as a form, a token pasted as the body, an unescaped
// '&' in a form) is never repeated in the error; a PGRST202 names only
// what could be a parameter name, and shows anything else as "?".
func TestErrorBodiesNeverEchoValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const (
		password = "Tr0ub4dor&3xyz"
		token    = "Zm9vYmFyYmF6cXV1eENvcnJlY3RIb3JzZUJhdHRlcnk"
	)
	cases := []struct {
		name   string
		path   string
		header http.Header
		body   string
		status int
		want   string
	}{
		{
			name: "json sent as a form", path: "/rpc/login", header: formHeader(),
			body:   `{"user_": "alice", "pass": "` + password + `"}`,
			status: 404,
			// Two pieces: the password's "&" splits the JSON text.
			want: `{"code":"PGRST202","details":"Searched for the function auth.login with parameters ?, ? or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",` +
				`"hint":"Perhaps you meant to call the function auth.login(pass, user_)","message":"Could not find the function auth.login(?, ?) in the schema cache"}`,
		},
		{
			name: "unescaped & in a form password", path: "/rpc/login", header: formHeader(),
			body:   "user_=alice&pass=" + password,
			status: 404,
			want: `{"code":"PGRST202","details":"Searched for the function auth.login with parameters ?, pass, user_ or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",` +
				`"hint":"Perhaps you meant to call the function auth.login(pass, user_)","message":"Could not find the function auth.login(?, pass, user_) in the schema cache"}`,
		},
		{
			name: "token as the form body", path: "/rpc/refresh_token", header: formHeader(),
			body:   token,
			status: 404,
			want: `{"code":"PGRST202","details":"Searched for the function auth.refresh_token with parameters ? or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",` +
				`"hint":"Perhaps you meant to call the function auth.refresh_token()","message":"Could not find the function auth.refresh_token(?) in the schema cache"}`,
		},
		{
			name: "token as a json key", path: "/rpc/logout", header: jsonHeader(),
			body:   `{"` + token + `": true}`,
			status: 404,
			want: `{"code":"PGRST202","details":"Searched for the function auth.logout with parameters ? or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",` +
				`"hint":"Perhaps you meant to call the function auth.logout()","message":"Could not find the function auth.logout(?) in the schema cache"}`,
		},
		{
			name: "token repeated as form fields", path: "/rpc/refresh_token", header: formHeader(),
			body:   token + "&" + token,
			status: 400,
			want:   `{"code":"PGRST102","details":null,"hint":null,"message":"Invalid form data: repeated field ?"}`,
		},
		{
			name: "password under a wrong name", path: "/rpc/login", header: jsonHeader(),
			body:   `{"user_": "alice", "password": "` + password + `"}`,
			status: 404,
			want: `{"code":"PGRST202","details":"Searched for the function auth.login with parameters password, user_ or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",` +
				`"hint":"Perhaps you meant to call the function auth.login(pass, user_)","message":"Could not find the function auth.login(password, user_) in the schema cache"}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(tc.path, tc.header, tc.body)
			for _, secret := range []string{password, "3xyz", token} {
				if strings.Contains(r.body, secret) {
					t.Errorf("error body repeats %q: %s", secret, r.body)
				}
			}
			wantStatus(t, r, tc.status)
			wantBody(t, r, tc.want)
		})
	}
}

// TestRepeatedJSONKeyRefused: a JSON body naming an argument twice is
// refused, as a repeated form field is, instead of the last one winning
// ({"user_":"bob","user_":"alice"} logging in alice).
func TestRepeatedJSONKeyRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct{ path, body, want string }{
		{"/rpc/login", `{"user_": "bob", "user_": "alice", "pass": "` + testPassword + `"}`,
			`{"code":"PGRST102","details":null,"hint":null,"message":"Invalid json: repeated key user_"}`},
		{"/rpc/login", `{"user_": "alice", "pass": null, "pass": "` + testPassword + `"}`,
			`{"code":"PGRST102","details":null,"hint":null,"message":"Invalid json: repeated key pass"}`},
		{"/rpc/refresh_token", `{"refresh_token": "a", "refresh_token": "b"}`,
			`{"code":"PGRST102","details":null,"hint":null,"message":"Invalid json: repeated key refresh_token"}`},
		{"/rpc/logout", `{"x-y": 1, "x-y": 2}`,
			`{"code":"PGRST102","details":null,"hint":null,"message":"Invalid json: repeated key ?"}`},
	}
	for _, tc := range cases {
		r := e.post(tc.path, jsonHeader(), tc.body)
		wantStatus(t, r, http.StatusBadRequest)
		wantBody(t, r, tc.want)
		if len(r.cookies) != 0 {
			t.Errorf("%s: got cookies %q", tc.body, r.setCookies())
		}
	}
	if n := e.count(`select count(*) from auth.session`); n != 0 {
		t.Errorf("got %d sessions, want 0", n)
	}
}

// TestCharsetOtherThanUTF8Refused: authd reads bodies as UTF-8 only, so a
// body declared in another charset is refused (415, as any Content-Type
// authd does not read) instead of being misread; UTF-8 may be spelt in any
// case, with or without the dash.
func TestCharsetOtherThanUTF8Refused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	refused := []struct{ contentType, want string }{
		{"application/json; charset=utf-16", "application/json; charset=utf-16"},
		{"application/json; charset=UTF-16LE", "application/json; charset=utf-16le"},
		{"application/json;charset=iso-8859-1", "application/json; charset=iso-8859-1"},
		{"application/x-www-form-urlencoded; charset=windows-1252", "application/x-www-form-urlencoded; charset=windows-1252"},
	}
	for _, tc := range refused {
		h := jsonHeader()
		h.Set("Content-Type", tc.contentType)
		r := e.post("/rpc/login", h, loginBody(testUser, testPassword))
		wantStatus(t, r, http.StatusUnsupportedMediaType)
		wantBody(t, r, `{"code":"PGRST102","details":null,"hint":null,"message":"Content-Type not acceptable: `+tc.want+`"}`)
	}
	for _, ct := range []string{"application/json; charset=UTF-8", "application/json; charset=utf8", "application/json; charset=\"utf-8\""} {
		h := jsonHeader()
		h.Set("Content-Type", ct)
		wantStatus(t, e.post("/rpc/login", h, loginBody(testUser, testPassword)), http.StatusNoContent)
	}
	h := formHeader()
	h.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8") // what jQuery sends
	wantStatus(t, e.post("/rpc/login", h, "user_=alice&pass=correct+horse+battery+staple"), http.StatusNoContent)
}
