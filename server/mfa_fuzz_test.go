package server

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"authd/identity"
)

// FuzzMFAVerifyBody feeds arbitrary bodies to /rpc/mfa_verify's parsing:
// the RPC decoder with its arguments (code, recovery_code), then the
// identity core's code parsers. Nothing may panic; a refusal is a 4xx
// *Error; no argument but the two is ever accepted.
func FuzzMFAVerifyBody(f *testing.F) {
	f.Add("application/json", `{"code": "123456"}`)
	f.Add("application/json", `{"recovery_code": "abcd-efgh-ijkl-mnop"}`)
	f.Add("application/json", `{"code": 123456}`)
	f.Add("application/json", `{"code": "123456", "code": "654321"}`)
	f.Add("application/json", `{"code": null, "recovery_code": "ABCDEFGHIJKLMNOP"}`)
	f.Add("application/x-www-form-urlencoded", "code=123+456")
	f.Add("application/x-www-form-urlencoded", "recovery_code=abcd%00efgh")
	f.Add("application/json", `{}`)
	f.Add("", ``)
	f.Fuzz(func(t *testing.T, contentType, body string) {
		r, err := http.NewRequest(http.MethodPost, "/rpc/mfa_verify", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Content-Type", contentType)
		args, err := decodeArgs(r, "auth.mfa_verify", nil, []string{"code", "recovery_code"})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 {
				t.Fatalf("got %v, want a 4xx *Error", err)
			}
			return
		}
		for k := range args {
			if k != "code" && k != "recovery_code" {
				t.Fatalf("accepted argument %q", k)
			}
		}
		identity.ParseTOTPCode(args["code"])
		identity.ParseRecoveryCode(args["recovery_code"])
	})
}
