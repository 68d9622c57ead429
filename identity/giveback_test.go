package identity

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	c, db := newTestCoreWith(t, Config{BcryptCost: 4, BcryptSlots: 1, LoginQueue: 1, LoginFailuresPerUser: 3, LoginQueueWait: time.Minute})
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
	waitQueued(t, c, 1, "the second login") // it waits in the queue of one
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

// TestFloodIsShedBeforeTheDatabase: logins that arrive together while one
// place is left at the gate (the one slot taken, the queue of one empty)
// are let in one at a time: the first keeps that place while it reserves
// its failure and reads its user, and the rest are shed at once, without
// a database round trip. Before, every one of them passed the door, did
// its database work, and all but one were then shed at the gate: under a
// flood of logins, more PostgreSQL work than the logins that got through.
func TestFloodIsShedBeforeTheDatabase(t *testing.T) {
	c, db := newTestCoreWith(t, Config{BcryptCost: 4, BcryptSlots: 1, LoginQueue: 1, LoginFailuresPerUser: 100, LoginQueueWait: time.Minute})
	entered, release := make(chan struct{}, 64), make(chan struct{})
	c.compare = func(hash, password string) bool {
		entered <- struct{}{}
		<-release
		return store.CheckPassword(hash, password)
	}
	ctx := context.Background()
	throttled := func() (n int) {
		t.Helper()
		if err := db.Pool().QueryRow(ctx, `select count(*) from auth.login_throttle`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	errs := make(chan error, 64)
	go func() { _, err := c.CheckPassword(ctx, "holder", "wrong", "c"); errs <- err }()
	<-entered // the one slot is taken; the queue of one is empty
	before := throttled()

	const flood = 32
	start := make(chan struct{})
	for i := range flood {
		go func() {
			<-start
			_, err := c.CheckPassword(ctx, fmt.Sprint("flood-", i), "wrong", fmt.Sprint("client-", i))
			errs <- err
		}()
	}
	close(start)
	var e *Error
	shed := 0
	for range flood - 1 {
		if err := <-errs; !errors.As(err, &e) || e.Kind != Busy {
			t.Fatalf("a login of the flood: %v, want shed (Busy) or queued", err)
		}
		shed++
	}
	// One was let in: it queues behind the holder, having reserved its
	// failure; the others never reached the database.
	waitQueued(t, c, 1, "the login let in")
	if got := throttled() - before; got != 1 {
		t.Errorf("the flood of %d reserved %d failures in the database, want 1 (the login let in)", flood, got)
	}
	close(release)
	for range 2 {
		if err := <-errs; !errors.As(err, &e) || e.Kind != Unauthorized {
			t.Fatalf("the holder or the one let in: %v, want Unauthorized", err)
		}
	}
	if n := c.bcrypt.slots.entering.Load(); n != 0 {
		t.Errorf("%d places still kept after every login ended", n)
	}
}

// waitQueued waits, a minute at most, until n logins wait in c's bcrypt
// queue; who names them for the failure.
func waitQueued(t *testing.T, c *Core, n int64, who string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for c.bcrypt.slots.waiting.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s never queued", who)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLogInHandsTheFailureToTheSession: a login that opens a session
// leaves the failure reserved for it to the session's statement, once: a
// statement that opened the session, or found the user changed, gave it
// back (not again here: two failures counted stay one); a statement that
// failed did not, and LogIn gives it back itself.
func TestLogInHandsTheFailureToTheSession(t *testing.T) {
	c, db := newTestCoreWith(t, Config{BcryptCost: 4, BcryptSlots: 1, LoginFailuresPerUser: 2})
	storetest.AddUser(t, db, "lena", "pw-of-lena")
	ctx := context.Background()
	open := func(change bool) func(store.User, *store.LoginRelease) error {
		return func(u store.User, r *store.LoginRelease) error {
			if r == nil || r.Username != "lena" {
				t.Errorf("release %+v, want lena's", r)
			}
			if change {
				u.PasswordHash = "$2a$04$changed"
			}
			_, err := db.StartSessionFrom(ctx, u, store.LoginClient{}, storetest.TokenHash(fmt.Sprint("lena-", time.Now().UnixNano())), time.Hour, time.Hour, false, r)
			return err
		}
	}
	var e *Error
	wrong := func(want Kind, step string) {
		t.Helper()
		if _, err := c.CheckPassword(ctx, "lena", "wrong", "c"); !errors.As(err, &e) || e.Kind != want {
			t.Fatalf("%s: a wrong password: %v, want kind %v", step, err, want)
		}
	}
	wrong(Unauthorized, "first") // one failure counted of two
	for range 3 {
		if err := c.LogIn(ctx, "lena", "pw-of-lena", "c", open(false)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.LogIn(ctx, "lena", "pw-of-lena", "c", open(true)); !errors.Is(err, store.ErrUserChanged) {
		t.Fatalf("user changed: %v, want store.ErrUserChanged", err)
	}
	failed := errors.New("the session's statement failed")
	for range 3 {
		if err := c.LogIn(ctx, "lena", "pw-of-lena", "c", func(store.User, *store.LoginRelease) error { return failed }); err != failed {
			t.Fatalf("open failed: %v, want its error as it is", err)
		}
	}
	// Still one failure counted: one more fits, and then none.
	wrong(Unauthorized, "second")
	wrong(Throttled, "third")
}

// TestLoginsPerAddress: an address gets its share of logins whatever
// their outcome — a right password too — and then 429 with the wait,
// which ThrottleLogin (the door's look) tells without counting; another
// address is not affected; a login shed before its compare gives its
// count back.
func TestLoginsPerAddress(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, db := newTestCoreWith(t, Config{BcryptCost: 4, BcryptSlots: 1, LoginQueue: 1, LoginQueueWait: time.Minute, LoginsPerIP: 60, Now: clock})
	storetest.AddUser(t, db, "hana", "pw-of-hana-0")
	ctx := context.Background()
	for i := range 10 { // a sixth of a minute's 60 at once
		if _, err := c.CheckPassword(ctx, "hana", "pw-of-hana-0", "192.0.2.7"); err != nil {
			t.Fatalf("login %d of 10: %v", i+1, err)
		}
	}
	if e := c.ThrottleLogin("192.0.2.8"); e != nil {
		t.Errorf("another address: ThrottleLogin %v, want nil", e)
	}
	for range 2 {
		e := c.ThrottleLogin("192.0.2.7")
		if e == nil || e.Kind != Throttled || e.Code != "PT429" || e.RetryAfter != 1 || e.Message != "Too many logins from this address; try again later" {
			t.Fatalf("ThrottleLogin after 10: %+v, want PT429 with Retry-After 1", e)
		}
	}
	var e *Error
	for _, pw := range []string{"pw-of-hana-0", "wrong"} {
		if _, err := c.CheckPassword(ctx, "hana", pw, "192.0.2.7"); !errors.As(err, &e) || e.Kind != Throttled || e.RetryAfter != 1 {
			t.Errorf("the eleventh login (%s password): %v, want throttled, Retry-After 1", map[bool]string{true: "right", false: "wrong"}[pw != "wrong"], err)
		}
	}
	if _, err := c.CheckPassword(ctx, "hana", "pw-of-hana-0", "192.0.2.8"); err != nil {
		t.Errorf("another address: %v", err)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if _, err := c.CheckPassword(ctx, "hana", "pw-of-hana-0", "192.0.2.7"); err != nil {
		t.Errorf("a second later: %v, want one more login", err)
	}
	if _, err := c.CheckPassword(ctx, "hana", "pw-of-hana-0", "192.0.2.7"); !errors.As(err, &e) || e.Kind != Throttled {
		t.Errorf("and then: %v, want throttled", err)
	}

	// Shed: the slot held, the queue of one taken, a third login from
	// an address with one login left is shed, and keeps that login.
	entered, release := make(chan struct{}, 4), make(chan struct{})
	c.compare = func(hash, password string) bool {
		entered <- struct{}{}
		<-release
		return store.CheckPassword(hash, password)
	}
	errs := make(chan error, 2)
	go func() { _, err := c.CheckPassword(ctx, "hana", "pw-of-hana-0", "192.0.2.9"); errs <- err }()
	<-entered
	go func() { _, err := c.CheckPassword(ctx, "hana", "pw-of-hana-0", "192.0.2.10"); errs <- err }()
	waitQueued(t, c, 1, "the second login")
	for range 10 {
		if _, err := c.CheckPassword(ctx, "hana", "pw-of-hana-0", "192.0.2.11"); !errors.As(err, &e) || e.Kind != Busy {
			t.Fatalf("a login with the queue full: %v, want shed (Busy)", err)
		}
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	c.compare = store.CheckPassword
	for i := range 10 {
		if _, err := c.CheckPassword(ctx, "hana", "pw-of-hana-0", "192.0.2.11"); err != nil {
			t.Fatalf("login %d after 10 shed: %v, want the address's 10 still there", i+1, err)
		}
	}
}
