package store

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Group commit for refresh. Each rotation must be durable before its
// answer, and one commit per rotation is what bounds refresh (its disk
// flush and its round trip). So the happy-path rotations that arrive
// while earlier ones are being written wait, and go together: one batch
// of rotateSQL statements, sent at once (one round trip) and run in one
// implicit transaction (one commit). Nothing waits on purpose: a
// rotation that finds a writer free is written at once, alone; batches
// form only when rotations arrive faster than they can be committed one
// by one.
//
// The semantics are those of the statements run one after another: a
// rotation sees the ones before it in its batch, so of two rotations of
// one token in a batch the second finds it spent and goes to the slow
// path, as a loser of a race does; a batch waits on another batch's row
// locks as a statement would. Statements are ordered by token hash, so
// that two batches lock shared rows in the same order and cannot
// deadlock each other. Every answer is given after the commit; if the
// batch fails, it commits nothing and every rotation in it fails with
// the error (a client retries, as after any failed refresh).

// maxRotationWriters is how many batches are written at once: more than
// one, so that a batch is gathered while another commits.
const maxRotationWriters = 4

// maxRotationBatch bounds a batch, and with it how long its rotations
// hold their row locks.
const maxRotationBatch = 64

// rotationTimeout bounds a batch: the longest a request may take.
const rotationTimeout = 10 * time.Second

type rotationQueue struct {
	mu      sync.Mutex
	pending []*rotation
	writers int
	// commits and rotations count batches and what they held, for
	// authd_refresh_commits_total and authd_refresh_rotations_total.
	commits, rotations atomic.Int64
}

type rotation struct {
	oldHash, newHash []byte
	ttl              time.Duration
	g                Grant
	err              error
	done             chan struct{}
}

// rotateGrouped is rotate's happy path (contested false) on the pool,
// written in a shared batch.
func (db *DB) rotateGrouped(ctx context.Context, oldHash, newHash []byte, ttl time.Duration) (Grant, error) {
	r := &rotation{oldHash: oldHash, newHash: newHash, ttl: ttl, done: make(chan struct{})}
	q := &db.rotations
	q.mu.Lock()
	q.pending = append(q.pending, r)
	if q.writers < maxRotationWriters {
		q.writers++
		batch := q.take()
		q.mu.Unlock()
		go db.writeRotations(batch)
	} else {
		q.mu.Unlock()
	}
	select {
	case <-r.done:
		return r.g, r.err
	case <-ctx.Done():
		// The rotation may still commit, as a statement cancelled
		// mid-flight may: the client retries with the same token.
		return Grant{}, wrapf(ctx.Err(), "rotate refresh token")
	}
}

// take removes up to maxRotationBatch pending rotations; q.mu is held.
func (q *rotationQueue) take() []*rotation {
	n := min(len(q.pending), maxRotationBatch)
	batch := slices.Clone(q.pending[:n])
	q.pending = slices.Delete(q.pending, 0, n)
	return batch
}

// writeRotations writes batch, and then whatever has queued meanwhile,
// until nothing is pending; then the writer ends.
func (db *DB) writeRotations(batch []*rotation) {
	q := &db.rotations
	for {
		db.commitRotations(batch)
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.writers--
			q.mu.Unlock()
			return
		}
		batch = q.take()
		q.mu.Unlock()
	}
}

// commitRotations runs batch in one round trip and one commit, and then
// answers each rotation.
func (db *DB) commitRotations(batch []*rotation) {
	ctx, cancel := context.WithTimeout(context.Background(), rotationTimeout)
	defer cancel()
	db.rotations.commits.Add(1)
	db.rotations.rotations.Add(int64(len(batch)))
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	if len(batch) == 1 {
		r := batch[0]
		r.g, r.err = db.rotate(ctx, db.p(), r.oldHash, r.newHash, r.ttl, false)
		return
	}
	slices.SortFunc(batch, func(a, b *rotation) int { return bytes.Compare(a.oldHash, b.oldHash) })
	b := &pgx.Batch{}
	for _, r := range batch {
		b.Queue(rotateSQL, r.oldHash, r.newHash, r.ttl.Seconds())
	}
	br := db.p().SendBatch(ctx, b)
	var failed error
	for _, r := range batch {
		r.g, r.err = scanRotation(br.QueryRow())
		if r.err != nil && !errors.Is(r.err, pgx.ErrNoRows) && failed == nil {
			failed = r.err
		}
	}
	// Close ends the implicit transaction: the commit.
	if err := br.Close(); err != nil && failed == nil {
		failed = wrapf(err, "commit %d refresh token rotations", len(batch))
	}
	if failed != nil {
		// Nothing of the batch was committed.
		for _, r := range batch {
			r.g, r.err = Grant{}, failed
		}
	}
}
