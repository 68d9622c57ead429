package identity

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"authd/store"
	"authd/store/storetest"
	"authd/token"
)

// newTestCore is a Core on a fresh migrated database, hashing at cost.
// (identity's tests have no storetest.Main: the database is migrated here.)
func newTestCore(t *testing.T, cost int) (*Core, *store.DB) {
	t.Helper()
	return newTestCoreWith(t, Config{BcryptCost: cost, BcryptSlots: 1})
}

// newTestCoreWith is newTestCore with cfg.
func newTestCoreWith(t *testing.T, cfg Config) (*Core, *store.DB) {
	t.Helper()
	db := storetest.Open(t, storetest.NewEmptyURL(t))
	ctx := context.Background()
	p, err := db.Migrator()
	if err == nil {
		_, err = p.Up(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	ks, err := token.NewKeySet([]byte("test-secret-that-is-at-least-32-bytes-long"), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.New(ks, token.Options{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, db, iss, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c, db
}

// compareLog records the cost of each hash a Core compares against.
type compareLog struct {
	mu    sync.Mutex
	costs []int
}

func (l *compareLog) hook(c *Core) {
	c.compare = func(hash, password string) bool {
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			cost = 0 // not a bcrypt hash
		}
		l.mu.Lock()
		l.costs = append(l.costs, cost)
		l.mu.Unlock()
		return store.CheckPassword(hash, password)
	}
}

func (l *compareLog) take() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.costs
	l.costs = nil
	return out
}

// TestRefusalCostsTheConfiguredCost: whatever cost a user's hash was made
// at, a refused login does as much bcrypt work as an unknown user's, one
// compare at the configured cost (work 2^cost) — so a wrong password's
// answer time does not point out the users with cheaper hashes
// (SuperStack's cost 6, or no usable hash at all).
func TestRefusalCostsTheConfiguredCost(t *testing.T) {
	const cost = 6
	c, db := newTestCore(t, cost)
	var log compareLog
	log.hook(c)
	ctx := context.Background()
	role := storetest.NewRole(t)
	add := func(name, hash string) {
		t.Helper()
		if err := db.AddUser(ctx, name, hash, role); err != nil {
			t.Fatal(err)
		}
	}
	hashAt := func(cost int) string {
		t.Helper()
		h, err := store.HashPassword("right password", cost)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	add("cheap", hashAt(4))
	add("cheap5", hashAt(5))
	add("current", hashAt(cost))
	// Of bcrypt's form (as the database requires) but of a cost bcrypt
	// refuses: refused without any bcrypt work.
	add("nohash", "$2a$03$"+strings.Repeat(".", 53))
	add("cheap-disabled", hashAt(4))
	if err := db.SetDisabled(ctx, "cheap-disabled", true); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		user, password, reason string
		want                   []int // costs compared against, in order
	}{
		{"nobody", "wrong", ReasonUnknownUser, []int{cost}},
		{"current", "wrong", ReasonWrongPassword, []int{cost}},
		{"cheap", "wrong", ReasonWrongPassword, []int{4, 4, 5}}, // 2^4 + 2^4 + 2^5 = 2^6
		{"cheap5", "wrong", ReasonWrongPassword, []int{5, 5}},
		{"nohash", "wrong", ReasonWrongPassword, []int{0, cost}},
		{"cheap-disabled", "right password", ReasonDisabled, []int{4, 4, 5}},
	} {
		_, err := c.CheckPassword(ctx, tc.user, tc.password, "192.0.2.1")
		var e *Error
		if !errors.As(err, &e) || e.Kind != Unauthorized || e.Reason != tc.reason {
			t.Errorf("%s: got %v, want Unauthorized (%s)", tc.user, err, tc.reason)
		}
		if got := log.take(); !slices.Equal(got, tc.want) {
			t.Errorf("%s, wrong password: compared against costs %v, want %v", tc.user, got, tc.want)
		}
	}

	// The right password pays no extra compare: the hash is upgraded
	// instead, which costs as much.
	if _, err := c.CheckPassword(ctx, "cheap", "right password", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); !slices.Equal(got, []int{4}) {
		t.Errorf("cheap, right password: compared against costs %v, want [4]", got)
	}
	u, err := db.User(ctx, "cheap")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := bcrypt.Cost([]byte(u.PasswordHash)); got != cost {
		t.Errorf("hash not upgraded: cost %d", got)
	}
}

// TestPadHashDoesTheWork: a pad hash is read as a hash of its cost and
// refuses a password only after computing it (a mismatch, not a malformed
// hash, which bcrypt refuses at once).
func TestPadHashDoesTheWork(t *testing.T) {
	for _, cost := range []int{bcrypt.MinCost, 6, 10} {
		h := padHash(cost)
		if got, err := bcrypt.Cost([]byte(h)); err != nil || got != cost {
			t.Errorf("padHash(%d): cost %d, %v", cost, got, err)
		}
		if cost > 6 {
			continue // slow, and the same code path
		}
		if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("any password")); !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			t.Errorf("padHash(%d) compare: got %v, want a mismatch after the work", cost, err)
		}
	}
}
