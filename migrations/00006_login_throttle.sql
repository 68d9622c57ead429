-- Failed logins per username, shared by every authd instance, so that N
-- instances do not give a guesser N times the limit. Each row is a leaky
-- bucket: `failures` as of `at`, draining at the configured rate; a login
-- reserves one failure before its password compare (in one statement, so
-- a concurrent burst cannot overshoot) and gives it back when it succeeds.
-- Rows are keyed by the SHA-256 of the username, so that a password typed
-- into the username field is not kept; unknown usernames are counted like
-- known ones, so that the throttle does not tell them apart. `empty_at`
-- is when the bucket has drained, for the purge job.

-- +goose Up
create table auth.login_throttle (
    key bytea primary key check (length(key) = 32),
    failures double precision not null check (failures >= 0),
    at timestamptz not null,
    empty_at timestamptz not null
);
create index login_throttle_empty_at_idx on auth.login_throttle (empty_at);

-- +goose Down
drop table auth.login_throttle;
