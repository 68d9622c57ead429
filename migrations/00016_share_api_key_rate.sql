-- An API key's plan rate, shared by every authd instance, so that N
-- instances do not let a key through N times its plan. Each row is a
-- leaky bucket like auth.login_throttle's: `level` requests counted as of
-- `at`, draining at the plan's rate per second, never above the plan's
-- requests per minute. An instance takes a small allowance at a time (at
-- most a second's worth of the plan's rate) in one statement, and admits
-- requests against it locally; `granted` is what that statement took.
-- A row goes with its key.

-- +goose Up
create table auth.api_key_rate (
    key_id text primary key references auth.api_key (id) on delete cascade,
    level double precision not null check (level >= 0),
    granted integer not null check (granted >= 0),
    at timestamptz not null
);
grant select, insert, update, delete on auth.api_key_rate to authd_app;

-- +goose Down
drop table auth.api_key_rate;
