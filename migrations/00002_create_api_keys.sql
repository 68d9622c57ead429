-- API keys for gateways (X-API-Key on /auth/verify) and the plans they
-- belong to. A key is stored as the SHA-256 of the whole key; its id is
-- public. Plans are data: an operator adds or changes one with SQL.

-- +goose Up
-- +goose StatementBegin

-- A plan's role is the default of its keys (a key may name another) and
-- key_lifetime their default expiry from creation (null: none).
create table auth.plan (
    name text primary key,
    role name not null,
    requests_per_minute integer not null check (requests_per_minute > 0),
    key_lifetime interval check (key_lifetime > interval '0')
);

-- The same role check as auth.user: a plan or key naming a role that does
-- not exist would mint tokens PostgREST refuses.
create constraint trigger ensure_plan_role_exists
    after insert or update of role on auth.plan
    for each row execute function auth.check_role_exists();

-- A key keeps its own role, copied from the plan at creation, so changing
-- a plan's default role does not silently re-role the keys already out.
create table auth.api_key (
    id text primary key,
    secret_hash bytea not null unique check (length(secret_hash) = 32),
    role name not null,
    plan text not null references auth.plan (name) on update cascade,
    enabled boolean not null default true,
    expires_at timestamptz,
    created_at timestamptz not null default now(),
    last_used_at timestamptz
);
create index api_key_plan_idx on auth.api_key (plan);

create constraint trigger ensure_api_key_role_exists
    after insert or update of role on auth.api_key
    for each row execute function auth.check_role_exists();

-- Cache invalidation: every authd instance (serve, nats-callout) LISTENs
-- on authd_api_key and drops the key named by the payload (its id, never
-- the secret) from its cache. NOTIFY is sent at commit, so a listener that reloads the key
-- sees the new row.
create function auth.notify_api_key_change() returns trigger
language plpgsql as $fn$
begin
    perform pg_notify('authd_api_key', old.id);
    return null;
end
$fn$;

create trigger api_key_deleted
    after delete on auth.api_key
    for each row execute function auth.notify_api_key_change();

-- Only changes that decide whether or as whom a key passes notify:
-- last_used_at is written about once a second for every busy key, and
-- waking every instance for it would empty their caches all the time.
create trigger api_key_changed
    after update on auth.api_key
    for each row
    when ((old.id, old.secret_hash, old.role, old.plan, old.enabled, old.expires_at)
          is distinct from (new.id, new.secret_hash, new.role, new.plan, new.enabled, new.expires_at))
    execute function auth.notify_api_key_change();
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
drop table auth.api_key;
drop function auth.notify_api_key_change();
drop table auth.plan;
-- +goose StatementEnd
