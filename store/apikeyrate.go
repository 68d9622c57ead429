package store

import (
	"context"
	"time"
)

// KeyRate is an API key plan's rate as a bucket: at most Capacity
// requests at once, refilling at PerSecond.
type KeyRate struct {
	Capacity  float64
	PerSecond float64
}

// TakeAPIKeyAllowance takes up to want requests of key id's shared rate
// (auth.api_key_rate) at now, in one statement: of a concurrent burst on
// any number of instances, no more get through than the bucket holds. It
// returns how many it took; with none left (granted 0), how long until one
// would fit. A clock behind the last writer's sees no time pass.
func (db *DB) TakeAPIKeyAllowance(ctx context.Context, id string, r KeyRate, want int, now time.Time) (granted int, wait time.Duration, err error) {
	var level float64
	// drained is the level as of now; the row is locked by the upsert,
	// so every instance computes it on the latest version.
	err = db.p().QueryRow(ctx, `
		insert into auth.api_key_rate as k (key_id, level, granted, at)
		values ($1, least($4::int, floor($2))::float8, least($4::int, floor($2)::int), $5)
		on conflict (key_id) do update
		   set granted = greatest(least($4::int, floor($2 - greatest(k.level - greatest(extract(epoch from $5 - k.at), 0) * $3, 0))::int), 0),
		       level = greatest(k.level - greatest(extract(epoch from $5 - k.at), 0) * $3, 0)
		             + greatest(least($4::int, floor($2 - greatest(k.level - greatest(extract(epoch from $5 - k.at), 0) * $3, 0))::int), 0),
		       at = greatest($5, k.at)
		returning granted, level`,
		id, r.Capacity, r.PerSecond, want, now).Scan(&granted, &level)
	if err != nil {
		return 0, 0, wrapf(err, "take api key %s allowance", id)
	}
	if granted > 0 {
		return granted, 0, nil
	}
	// Until the bucket has drained to Capacity - 1.
	wait = time.Duration((level + 1 - r.Capacity) / r.PerSecond * float64(time.Second))
	return 0, max(wait, time.Millisecond), nil
}
