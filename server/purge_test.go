package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestPurge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withGrace(time.Minute))
	revoked := refreshValue(t, e.login())
	expired := refreshValue(t, e.login())
	live := refreshValue(t, e.login())
	liveNext := refreshValue(t, e.refreshWith(live)) // live's session: a spent parent and a live child

	h := jsonHeader()
	h.Set("Cookie", "refresh_token="+revoked)
	wantStatus(t, e.post("/rpc/logout", h, ""), http.StatusNoContent)
	e.exec(`update auth.session set revoked_at = now() - interval '2 hours' where revoked_at is not null`)
	e.exec(`update auth.refresh_token set expires_at = now() - interval '1 minute'
	         where session_id = (select session_id from auth.refresh_token where token_hash = sha256($1::bytea))`, expired)
	// The live session's spent parent has expired; its child has not.
	e.exec(`update auth.refresh_token set expires_at = now() - interval '1 minute'
	         where token_hash = sha256($1::bytea)`, live)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.api.RunPurge(ctx, time.Hour); close(done) }()
	deadline := time.Now().Add(time.Minute) // a bound on a hang: the first purge runs at once
	for e.count(`select count(*) from auth.session`) != 1 || e.count(`select count(*) from auth.refresh_token`) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("purge left %d sessions, %d tokens; want 1 and 1",
				e.count(`select count(*) from auth.session`), e.count(`select count(*) from auth.refresh_token`))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	// The live child survives its purged parent and still refreshes.
	wantStatus(t, e.refreshWith(liveNext), http.StatusNoContent)
	m := do(t, nil, http.MethodGet, e.srv.URL+"/metrics", nil, "").body
	for _, want := range []string{`authd_purged_total{kind="session"} 2`, `authd_purged_total{kind="refresh_token"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
