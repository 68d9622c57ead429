package store_test

import (
	"context"
	"testing"
	"time"

	"authd/store"
	"authd/store/storetest"
)

// listen runs db.Listen in the background until the test ends and returns
// its notifications and its result; it returns once LISTEN is in place.
func listen(t *testing.T, db *store.DB, idle time.Duration) (<-chan store.Notification, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	notes := make(chan store.Notification, 16)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.Listen(ctx, []string{store.ChannelAPIKey, store.ChannelNATS}, idle,
			func() { close(ready) }, func(n store.Notification) { notes <- n })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Listen after cancel = %v, want nil", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Listen: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("Listen did not start listening within a minute")
	}
	return notes, done
}

func next(t *testing.T, notes <-chan store.Notification) store.Notification {
	t.Helper()
	select {
	case n := <-notes:
		return n
	case <-time.After(time.Minute):
		t.Fatal("no notification within a minute")
		return store.Notification{}
	}
}

// TestListenHearsCommittedChanges: the triggers of migrations 00002 and
// 00003 notify at commit, with the key id or role name; a rolled-back
// change notifies nothing.
func TestListenHearsCommittedChanges(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	role := addKey(t, db, "k1")
	notes, _ := listen(t, db, time.Minute)

	tx, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `update auth.api_key set enabled = false where id = 'k1'`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.TouchAPIKeys(ctx, []string{"k1"}); err != nil { // last_used_at: no notification
		t.Fatal(err)
	}
	if err := db.DisableAPIKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if n := next(t, notes); n != (store.Notification{Channel: store.ChannelAPIKey, Payload: "k1"}) {
		t.Errorf("after disabling k1 got %+v", n)
	}
	if err := db.GrantNATS(ctx, role, "pub_allow", "orders.>"); err != nil {
		t.Fatal(err)
	}
	if n := next(t, notes); n != (store.Notification{Channel: store.ChannelNATS, Payload: role}) {
		t.Errorf("after a grant got %+v", n)
	}
}

// TestListenEndsWhenTheURLIsReloaded: after Reconnect, Listen returns
// within its idle period so that the caller listens on the new pool.
func TestListenEndsWhenTheURLIsReloaded(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	db := storetest.Open(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.Listen(ctx, []string{store.ChannelAPIKey}, 10*time.Millisecond, func() { close(ready) }, func(store.Notification) {})
	}()
	<-ready
	if err := db.Reconnect(ctx, url); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("Listen returned nil after a reload, want an error that says why")
		}
	case <-time.After(time.Minute):
		t.Fatal("Listen still on the old pool a minute after the reload")
	}
}
