package identity

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"authd/store"
	"authd/store/storetest"
)

// TestShedLoginCountsNoFailure: a login shed before its compare (the
// bcrypt queue was full) checked no password, so the failure it reserved
// is given back: a storm of real users behind one address must not lock
// a username out without a single wrong password.
func TestShedLoginCountsNoFailure(t *testing.T) {
	base, db := newTestCore(t, 4)
	c, err := New(Config{BcryptCost: 4, BcryptSlots: 1, LoginQueue: 1, LoginFailuresPerUser: 3, LoginQueueWait: time.Minute},
		db, base.tokens, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	storetest.AddUser(t, db, "gina", "pw-of-gina-0")
	entered, release := make(chan struct{}, 4), make(chan struct{})
	c.compare = func(hash, password string) bool {
		entered <- struct{}{}
		<-release
		return store.CheckPassword(hash, password)
	}
	ctx := context.Background()
	errs := make(chan error, 2)
	go func() { _, err := c.CheckPassword(ctx, "gina", "wrong-1", "c"); errs <- err }()
	<-entered // the first holds the one slot
	go func() { _, err := c.CheckPassword(ctx, "gina", "wrong-2", "c"); errs <- err }()
	deadline := time.Now().Add(time.Minute)
	for c.bcrypt.slots.waiting.Load() != 1 { // the second waits in the queue of one
		if time.Now().After(deadline) {
			t.Fatal("the second login never queued")
		}
		time.Sleep(time.Millisecond)
	}
	var e *Error
	if _, err := c.CheckPassword(ctx, "gina", "wrong-3", "c"); !errors.As(err, &e) || e.Kind != Busy {
		t.Fatalf("third login: %v, want shed (Busy)", err)
	}
	close(release)
	for range 2 {
		if err := <-errs; !errors.As(err, &e) || e.Kind != Unauthorized {
			t.Fatalf("a queued wrong password: %v, want Unauthorized", err)
		}
	}
	// Two failures counted, not three: the limit of 3 still has room.
	if _, err := c.CheckPassword(ctx, "gina", "wrong-4", "c"); !errors.As(err, &e) || e.Kind != Unauthorized {
		t.Errorf("fourth login: %v, want a password check (Unauthorized), not throttled", err)
	}
}
