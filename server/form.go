package server

import (
	"bytes"
	"encoding/json"
	"html/template"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

// A browser without JavaScript signs in and out by posting the page's
// HTML form to /rpc/login or /rpc/logout. Answered as an RPC (204, or a
// JSON error) it would leave the user on a blank page or raw JSON, so
// such a request — a form post that is a navigation — is answered as a
// browser expects a form to be: 303 See Other to the form's "next" field
// (a path on this site only, see safeNext) on success; on a refusal, a
// small HTML page with authd's message and a link back. The wording is
// the error's message, as JSON clients get it: one set of messages, no
// second mapping to keep in step. Any other request is an RPC and is
// answered as before.

// formNextField is the form field naming where to go after success. It is
// taken out of the body before the handler reads it, so the handler's
// argument check (PGRST202) does not see it.
const formNextField = "next"

// formBackKey is the echo.Context key under which browserForm leaves the
// link back to the form's page; errorHandler renders an error as an HTML
// page when it is set.
const formBackKey = "authd.formBack"

// formAction is what the form was for, in the titles of its pages.
type formAction string

const (
	formSignIn  formAction = "Sign-in"
	formSignOut formAction = "Sign-out"
)

// browserForm answers a form navigation to next as described above. It
// goes outside the origin policy (sameSite), which still applies: a
// refused cross-site post gets the HTML page too.
func (s *Server) browserForm(action formAction) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if !formNavigation(r.Header) {
				return next(c)
			}
			// One byte past the limit: the handler refuses the body as it
			// would any other too large one.
			raw, err := io.ReadAll(io.LimitReader(r.Body, bodyLimit+1))
			if err != nil {
				return errInvalidBody()
			}
			rest, target := takeField(raw, formNextField)
			r.Body = io.NopCloser(bytes.NewReader(rest))
			r.ContentLength = int64(len(rest))

			referer := r.Header.Get("Referer")
			back := backLink(referer)
			if target == "" {
				// A page without JavaScript cannot copy its own ?next=
				// into the form: take it from the page's address.
				target = refererNext(referer)
			}
			dest, ok := safeNext(target)
			if !ok {
				// No next, or one that would leave the site: back to the
				// page the form was on.
				dest = back
			}
			c.Set(formBackKey, formBack{action: action, link: back, next: dest})

			// The handler's answer is held back: its cookies are kept (the
			// header map is shared), its status and body replaced.
			orig := c.Response()
			rec := &heldResponse{header: orig.Header()}
			c.SetResponse(echo.NewResponse(rec, c.Echo()))
			err = next(c)
			c.SetResponse(orig)
			if err != nil {
				return err // errorHandler renders the HTML page
			}
			if rec.status < 200 || rec.status > 299 {
				return errInternal(errUnexpectedStatus(rec.status))
			}
			orig.Header().Del("Content-Type")
			if mfaRequired(rec.body.Bytes()) {
				// Signed in, but a second factor is due before the session
				// is complete: ask for it on a page of its own.
				return renderFormPage(c, http.StatusOK, formPage{
					Title: "Enter your code", Message: "This account has a second factor. Enter the code from your authenticator app.",
					CodeForm: true, Next: dest, Back: back,
				})
			}
			c.Response().Header().Set("Cache-Control", "no-store")
			return c.Redirect(http.StatusSeeOther, dest)
		}
	}
}

// formBack is what errorHandler needs to answer a browser form.
type formBack struct {
	action formAction
	link   string // the form's page
	next   string // where the form was to lead
}

// formNavigation reports whether a request is a browser's plain form post:
// form-encoded, and a navigation — Sec-Fetch-Mode says so, or, from a
// browser without Fetch Metadata, Accept asks for HTML and not JSON.
// fetch() and curl send Sec-Fetch-Mode cors or no Accept for HTML, and get
// the RPC answer.
func formNavigation(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return false
	}
	if mode := h.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	accept := strings.ToLower(h.Get("Accept"))
	return strings.Contains(accept, "text/html") && !strings.Contains(accept, "application/json")
}

// takeField removes every name=value pair named name from a form body and
// returns the rest and the value. A name given more than once yields "",
// as no value is more the form's than another.
func takeField(raw []byte, name string) (rest []byte, value string) {
	var kept []string
	seen := 0
	for piece := range strings.SplitSeq(string(raw), "&") {
		k, v, _ := strings.Cut(piece, "=")
		if uk, err := url.QueryUnescape(k); err != nil || uk != name {
			kept = append(kept, piece)
			continue
		}
		seen++
		value, _ = url.QueryUnescape(v)
	}
	if seen != 1 {
		value = ""
	}
	return []byte(strings.Join(kept, "&")), value
}

// maxNextLen bounds a next path: a Location header, not a document.
const maxNextLen = 2048

// safeNext returns next if it is a path on this site to send a browser to
// after a form, and false otherwise. It is deliberately narrow, since
// browsers resolve a Location more loosely than url.Parse reads it: a
// backslash is a slash to them (/\evil.example is //evil.example, another
// host), tabs and newlines are dropped (/<tab>/evil.example), and a
// gateway or application further on may decode %5C or %2F before it
// looks. So: printable ASCII only, one leading slash, no backslash, and
// neither // nor a backslash after percent-decoding; no scheme, host or
// user.
func safeNext(next string) (string, bool) {
	if next == "" || len(next) > maxNextLen || next[0] != '/' {
		return "", false
	}
	for i := 0; i < len(next); i++ {
		if b := next[i]; b <= ' ' || b >= 0x7f || b == '\\' {
			return "", false
		}
	}
	dec, err := url.PathUnescape(next)
	if err != nil || strings.HasPrefix(dec, "//") || strings.ContainsAny(dec, "\\\x00\t\r\n") {
		return "", false
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "", false
	}
	return next, true
}

// backLink is the path and query of the page that posted the form (its
// Referer, which the page sends to its own origin: Referrer-Policy
// same-origin), or "/" when there is none fit to link to.
func backLink(referer string) string {
	u, err := url.Parse(referer)
	if err != nil || referer == "" {
		return "/"
	}
	p := u.EscapedPath()
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	if back, ok := safeNext(p); ok {
		return back
	}
	return "/"
}

// refererNext is the next query parameter of the page that posted the
// form, or "".
func refererNext(referer string) string {
	u, err := url.Parse(referer)
	if err != nil {
		return ""
	}
	return u.Query().Get(formNextField)
}

// mfaRequired reports whether a login's answer asks for a second factor
// ({"mfa_required": true}).
func mfaRequired(body []byte) bool {
	var v struct {
		MFARequired bool `json:"mfa_required"`
	}
	return len(body) > 0 && json.Unmarshal(body, &v) == nil && v.MFARequired
}

// heldResponse keeps a handler's status and body instead of sending them.
type heldResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header { return h.header }

func (h *heldResponse) WriteHeader(status int) { h.status = status }

func (h *heldResponse) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return h.body.Write(b)
}

type errUnexpectedStatus int

func (e errUnexpectedStatus) Error() string {
	return "browser form: handler answered status " + http.StatusText(int(e))
}

// formPage is the HTML answer to a browser form. Code and message are the
// error's, as the JSON body would have them.
type formPage struct {
	Title    string
	Message  string
	Code     string
	CodeForm bool   // ask for a one-time code (POST /rpc/mfa_verify)
	Next     string // where the code form leads
	Back     string
}

// formPageCSP allows nothing but this page's own form: no script, no
// style, no images, and no framing.
const formPageCSP = "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

var formTemplate = template.Must(template.New("form").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{{.Title}} — authd</title>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p role="alert" id="message">{{.Message}}</p>
{{- if .Code}}
<p><small>Error code {{.Code}}</small></p>
{{- end}}
{{- if .CodeForm}}
<form method="post" action="/rpc/mfa_verify">
<input type="hidden" name="next" value="{{.Next}}">
<label for="code">Code</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required>
<button type="submit">Continue</button>
</form>
{{- end}}
<p><a href="{{.Back}}">Back to the sign-in page</a></p>
</main>
</body>
</html>
`))

// renderFormPage answers with page, escaped by html/template.
func renderFormPage(c echo.Context, status int, page formPage) error {
	var b bytes.Buffer
	if err := formTemplate.Execute(&b, page); err != nil {
		return errInternal(err)
	}
	h := c.Response().Header()
	h.Set("Content-Security-Policy", formPageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	return c.HTMLBlob(status, b.Bytes())
}

// renderFormError is errorHandler's answer to a browser form: e's status
// and headers, and an HTML page with its message.
func renderFormError(c echo.Context, e *Error, back formBack) {
	h := c.Response().Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	_ = renderFormPage(c, e.Status, formPage{
		Title: string(back.action) + " failed", Message: e.Message, Code: e.Code, Back: back.link,
	})
}
