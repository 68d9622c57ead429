package main

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"authd/store/storetest"
)

// TestServeHoldsRepeatedRefusals: through `authd serve` with its default
// AUTHD_LOGIN_SHED_HOLD (1s), a client that posts another login right
// after a refusal, ignoring its Retry-After, gets that refusal only after
// the hold; a client from another address (X-Forwarded-For, believed
// from loopback) is not held. With AUTHD_LOGIN_SHED_HOLD=0 none
// is held.
func TestServeHoldsRepeatedRefusals(t *testing.T) {
	t.Parallel()
	for _, hold := range []string{"", "0"} {
		t.Run("hold="+hold, func(t *testing.T) {
			t.Parallel()
			url := storetest.NewURL(t)
			env := map[string]string{
				// One slot and one place in the queue, compares of a
				// tenth of a second (over a second under the race
				// detector) against milliseconds for a probe.
				"AUTHD_BCRYPT_COST": "11", "AUTHD_BCRYPT_SLOTS": "1", "AUTHD_LOGIN_QUEUE": "1",
				"AUTHD_LOGIN_QUEUE_WAIT": "1m", "AUTHD_BCRYPT_NICE": "0", "AUTHD_LOG_LEVEL": "error",
			}
			if hold != "" {
				env["AUTHD_LOGIN_SHED_HOLD"] = hold
			}
			srv := startServer(t, url, env)
			login := func(from string) (int, http.Header, time.Duration) {
				req, err := http.NewRequest(http.MethodPost, srv.base+"/rpc/login", strings.NewReader(`{"user_":"nobody","pass":"wrong"}`))
				if err != nil {
					t.Error(err)
					return 0, nil, 0
				}
				req.Header.Set("Content-Type", "application/json")
				if from != "" {
					req.Header.Set("X-Forwarded-For", from)
				}
				start := time.Now()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return 0, nil, 0
				}
				defer resp.Body.Close()
				_, _ = io.Copy(io.Discard, resp.Body)
				return resp.StatusCode, resp.Header, time.Since(start)
			}
			metric := func(name string) float64 {
				resp, err := http.Get(srv.base + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				for line := range strings.SplitSeq(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, name+" "); ok {
						f, _ := strconv.ParseFloat(v, 64)
						return f
					}
				}
				return -1
			}
			// Fill the slot and the queue, from an address of their own.
			fillers := make(chan int, 16)
			sent := 0
			deadline := time.Now().Add(time.Minute)
			for metric("authd_bcrypt_queue_depth") < 1 {
				for ; sent < 2; sent++ {
					go func() { s, _, _ := login("192.0.2.99"); fillers <- s }()
				}
				if time.Now().After(deadline) {
					t.Fatal("no login waited for the slot within a minute")
				}
				time.Sleep(5 * time.Millisecond)
			}
			// One client refused, posting again at once; meanwhile
			// another client's first login.
			first, _, _ := login("192.0.2.1")
			otherDone := make(chan int, 1)
			go func() { s, _, _ := login("192.0.2.2"); otherDone <- s }()
			again, h, took := login("192.0.2.1")
			other := <-otherDone
			if first != http.StatusServiceUnavailable || again != http.StatusServiceUnavailable || other != http.StatusServiceUnavailable {
				t.Fatalf("with the slot and the queue taken: %d, %d, %d; want 503 each", first, again, other)
			}
			if h.Get("Retry-After") != "1" {
				t.Errorf("the repeated refusal's Retry-After: %q, want 1", h.Get("Retry-After"))
			}
			held := metric("authd_login_shed_held_total")
			// Held: the repeated refusal alone, not the other client's.
			if hold == "" && (took < time.Second || held != 1) {
				t.Errorf("the refusal right after a refusal came after %s, %v held; want after the 1s hold, 1 held", took, held)
			}
			if hold == "0" && held != 0 {
				t.Errorf("AUTHD_LOGIN_SHED_HOLD=0: %v refusals held, want 0", held)
			}
			// The logins that filled the gate are answered: 401, or 503
			// if a loaded machine made the second wait out the fixed 10 s
			// request deadline behind the first.
			for range sent {
				if s := <-fillers; s != http.StatusUnauthorized && s != http.StatusServiceUnavailable {
					t.Errorf("a login that filled the gate: %d, want 401 (or 503)", s)
				}
			}
		})
	}
}
