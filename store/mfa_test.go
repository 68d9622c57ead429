package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"authd/store"
	"authd/store/storetest"
)

// TestVerifyMFAOnce: concurrent proofs of one time step, each from a
// session of its own, step up exactly one session: the compare-and-set on
// the factor's last step lets one through and refuses the others
// (ErrMFACodeRefused), which change nothing. An older step is refused
// too; a later one passes.
func TestVerifyMFAOnce(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	storetest.AddUser(t, db, "alice", "pw")
	if err := db.EnrollMFA(ctx, "alice", uuid.New(), "JBSWY3DPEHPK3PXP"); err != nil {
		t.Fatal(err)
	}
	f, err := db.MFAFactorOf(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	proof := func(sid uuid.UUID, step int64, refresh string) store.MFAProof {
		return store.MFAProof{
			Username: "alice", SessionID: sid, Factor: f, Step: step, AMR: []string{"pwd", "totp"},
			NewRecoveryHashes: [][]byte{storetest.TokenHash("r1"), storetest.TokenHash("r2")},
			RefreshHash:       storetest.TokenHash(refresh), RefreshTTL: time.Hour, Lifetime: 24 * time.Hour,
		}
	}
	const n = 8
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		passed, refused int
	)
	for i := range n {
		g := storetest.StartSession(t, db, "alice", uuid.NewString())
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := db.VerifyMFA(ctx, proof(g.SessionID, 1000, "new"+string(rune('a'+i))))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				passed++
			case errors.Is(err, store.ErrMFACodeRefused):
				refused++
			default:
				t.Errorf("VerifyMFA: %v", err)
			}
		}()
	}
	wg.Wait()
	if passed != 1 || refused != n-1 {
		t.Fatalf("got %d passed and %d refused, want 1 and %d", passed, refused, n-1)
	}
	var aal2, codes int
	if err := db.Pool().QueryRow(ctx, `select (select count(*) from auth.session where aal = 'aal2'),
		(select count(*) from auth.mfa_recovery_code)`).Scan(&aal2, &codes); err != nil {
		t.Fatal(err)
	}
	if aal2 != 1 || codes != 2 {
		t.Errorf("got %d aal2 sessions and %d recovery codes, want 1 and 2", aal2, codes)
	}

	f.Verified = true
	g := storetest.StartSession(t, db, "alice", "later")
	if _, err := db.VerifyMFA(ctx, proof(g.SessionID, 999, "older")); !errors.Is(err, store.ErrMFACodeRefused) {
		t.Errorf("an older step: got %v, want ErrMFACodeRefused", err)
	}
	got, err := db.VerifyMFA(ctx, proof(g.SessionID, 1001, "later2"))
	if err != nil {
		t.Fatal(err)
	}
	if got.AAL != "aal2" || got.Role == "" {
		t.Errorf("grant %+v, want aal2 with the user's role", got)
	}
	if err := db.EnrollMFA(ctx, "alice", uuid.New(), "OTHERSECRET"); !errors.Is(err, store.ErrMFAEnrolled) {
		t.Errorf("enroll over a verified factor: got %v, want ErrMFAEnrolled", err)
	}
}
