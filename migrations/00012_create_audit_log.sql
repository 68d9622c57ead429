-- The audit log (issue 14): who logged in, failed, was throttled or shed,
-- whose refresh token was replayed, who logged out, and what an admin
-- changed from the CLI. serve writes it in batches (server.Auditor), the
-- CLI as it acts; `authd audit` reads it; the purge job deletes rows older
-- than AUTHD_AUDIT_RETENTION.
--
-- Never a secret: no password, token or hash goes into any column,
-- details included. A refused login whose name is no user's has no
-- username: it may be a password typed into the wrong field.

-- +goose Up
-- +goose StatementBegin
create table auth.audit_log (
    id bigint generated always as identity primary key,
    at timestamptz not null default now(),
    event text not null,
    username text,
    session_id uuid,
    -- The client address as authd saw it (behind trusted proxies, the
    -- forwarded one); text, not inet, so that a unix-socket peer or an
    -- unparsable address is still recorded, not lost with its batch.
    client text,
    user_agent text,
    outcome text not null,
    details jsonb not null default '{}'
);

-- `authd audit --user` and a user's own history; retention and --since.
create index audit_log_username_at on auth.audit_log (username, at);
create index audit_log_at on auth.audit_log (at);

-- serve appends rows, reads none but for `authd audit` run as it, and
-- deletes only in the purge job; no update: history is not rewritten.
grant select, insert, delete on auth.audit_log to authd_app;

-- A user's own history, for a PostgREST deployment to expose: the rows
-- whose username is the "username" claim of the request's JWT (PostgREST
-- sets request.jwt.claims). The view runs with its owner's rights, so
-- the roles of users need SELECT on it (or on a view over it in the API
-- schema) and nothing on auth.audit_log; security_barrier keeps a
-- caller's own leaky functions from seeing rows before the filter. No
-- claim, no rows. docs/operating.md shows the grants.
create view auth.own_audit_log with (security_barrier) as
    select at, event, outcome, session_id, client, user_agent, details
      from auth.audit_log
     where username = nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'username';
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
drop view auth.own_audit_log;
drop table auth.audit_log;
-- +goose StatementEnd
