package store

import (
	"context"
	"slices"
	"time"
)

// RefreshSQL are the statements Refresh runs, by name, with how many
// parameters each takes: growth_test.go explains them as sent.
var RefreshSQL = map[string]struct {
	SQL    string
	Params int
}{"rotate": {rotateSQL, 3}, "rotate contested": {rotateContestedSQL, 3}, "check": {refreshCheckSQL, 2}}

// ReserveSQL is the statement of the login and reset throttles'
// reservations: $1 the key, $2 the limit, $3 the drain per second, $4 now.
const ReserveSQL = reserveSQL

// ReserveAndUserSQL is ReserveLoginFailureAndLoadUser's statement: $1 to
// $4 as ReserveSQL's, $5 the username.
const ReserveAndUserSQL = reserveAndUserSQL

// Rotation is one refresh for CommitRotations: the hashes of the token
// presented and of its child, and the child's life.
type Rotation struct {
	Old, New []byte
	TTL      time.Duration
}

// CommitRotations writes rs as one batch, as group commit does when they
// arrive together, and returns each one's outcome in rs's order.
func (db *DB) CommitRotations(rs []Rotation) ([]Grant, []error) {
	batch := make([]*rotation, len(rs))
	for i, r := range rs {
		batch[i] = &rotation{oldHash: r.Old, newHash: r.New, ttl: r.TTL, done: make(chan struct{})}
	}
	db.commitRotations(slices.Clone(batch))
	gs, errs := make([]Grant, len(rs)), make([]error, len(rs))
	for i, r := range batch {
		gs[i], errs[i] = r.g, r.err
	}
	return gs, errs
}

// RotateAlone is the happy-path rotation without group commit: one
// statement, one commit (BenchmarkRefreshCommit's baseline).
func (db *DB) RotateAlone(ctx context.Context, oldHash, newHash []byte, ttl time.Duration) (Grant, error) {
	return db.rotate(ctx, db.p(), oldHash, newHash, ttl, false)
}

// RotationBatches is how many group commits wrote how many rotations.
func (db *DB) RotationBatches() (commits, rotations int64) {
	return db.rotations.commits.Load(), db.rotations.rotations.Load()
}
