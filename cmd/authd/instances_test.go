package main

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"authd/store/storetest"
)

// TestThreeInstancesOneSetOfRules: three `authd serve` processes on one
// database, asked in turn as a round-robin load balancer would. An API
// key's plan and a username's failed-login limit hold for the three
// together, not three times over; a logout on one reaches the other two
// through the change notification (AUTHD_CACHE_RECHECK is an hour).
func TestThreeInstancesOneSetOfRules(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	role := storetest.NewRole(t)
	mustRun(t, env, "pw-of-rita-0\n", "user", "add", "rita", "--role", role)
	mustRun(t, env, "pw-of-rosa-0\n", "user", "add", "rosa", "--role", role)
	const rpm = 30
	keyPlain, _ := keyFrom(t, mustRun(t, env, "", "apikey", "create", "--plan", newPlan(t, url, role, rpm, "")))

	bin := goBuild(t, "authd", ".")
	env["AUTHD_ADDR"] = "127.0.0.1:0"
	env["JWT_SECRET"] = secret32
	env["AUTHD_CACHE_RECHECK"] = "1h"
	const perUser = 5
	env["AUTHD_LOGIN_FAILURES_PER_USER"] = "5"
	var bases []string
	for range 3 {
		base := serveProcess(t, bin, env)
		waitListening(t, base)
		bases = append(bases, base)
	}

	// The key's plan: 3 × rpm requests at once, round robin. Each
	// instance alone would let rpm through; together they let rpm through,
	// plus what the bucket refilled meanwhile (rpm/60 a second).
	start := time.Now()
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := range 3 * rpm {
		wg.Go(func() {
			s := verifyKey(t, bases[i%3], keyPlain)
			mu.Lock()
			statuses[s]++
			mu.Unlock()
		})
	}
	wg.Wait()
	refill := int(time.Since(start).Seconds()*rpm/60) + 1
	if ok := statuses[http.StatusOK]; ok < rpm || ok > rpm+refill || statuses[http.StatusOK]+statuses[http.StatusForbidden] != 3*rpm {
		t.Errorf("API key over three instances: got %v, want %d to %d 200s and 403s for the rest", statuses, rpm, rpm+refill)
	}

	// Wrong passwords for one username, at once, round robin: the shared
	// per-username limit answers 429 past it (twice it at most, for a
	// client that had not failed before), not three times it.
	clear(statuses)
	for i := range 30 {
		wg.Go(func() {
			s := instancePost(t, bases[i%3]+"/rpc/login", `{"user_":"rita","pass":"wrong"}`, nil).StatusCode
			mu.Lock()
			statuses[s]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if checked := 30 - statuses[http.StatusTooManyRequests]; checked < perUser || checked > 2*perUser {
		t.Errorf("wrong passwords over three instances: got %v, want %d to %d password checks and 429 for the rest", statuses, perUser, 2*perUser)
	}

	// A logout on one instance ends the session on all three.
	login := instancePost(t, bases[0]+"/rpc/login", `{"user_":"rosa","pass":"pw-of-rosa-0"}`, nil)
	var access string
	for _, c := range login.Cookies() {
		if c.Name == "access_token" {
			access = c.Value
		}
	}
	if access == "" {
		t.Fatalf("login: %d, no access_token cookie", login.StatusCode)
	}
	for _, base := range bases {
		if got := verifyBearer(t, base, access); got != http.StatusOK {
			t.Fatalf("%s before logout: %d, want 200", base, got)
		}
	}
	if got := instancePost(t, bases[1]+"/rpc/logout", "", http.Header{"Authorization": {"Bearer " + access}}).StatusCode; got != http.StatusNoContent {
		t.Fatalf("logout: %d, want 204", got)
	}
	deadline := time.Now().Add(time.Minute) // a bound on a hang; a notification takes milliseconds
	for _, base := range bases {
		for verifyBearer(t, base, access) != http.StatusUnauthorized {
			if time.Now().After(deadline) {
				t.Fatalf("%s still accepts the token a minute after logout", base)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// instancePost posts a JSON body to url with the headers h.
func instancePost(t *testing.T, url, body string, h http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if h != nil {
		req.Header = h
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// verifyBearer is the status /auth/verify at base answers for an access
// token.
func verifyBearer(t *testing.T, base, access string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/auth/verify", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
