-- What a database role may do on NATS, for authd's NATS auth callout: the
-- role in a user's token means the same thing to PostgREST and to NATS.
-- Managed with `authd nats grant|revoke|list`, or plain SQL.

-- +goose Up
-- +goose StatementBegin

-- A NATS subject or subject pattern: tokens separated by '.', none empty;
-- '*' matches one token and '>' the rest of the subject, so each is only
-- allowed as a whole token and '>' only as the last. No whitespace or
-- control character anywhere (Go's unicode.IsSpace and unicode.IsControl:
-- store.CheckNATSSubject applies the same rule before writing).
-- Examples: orders.*, events.>, >, $JS.API.>, _INBOX.>
-- Refused:  foo..bar, foo.>.bar, fo*o, foo>, "foo bar"
create function auth.is_nats_subject(subject text) returns boolean
language sql immutable strict parallel safe as $fn$
    select subject ~ ('^(([^.*>\x01-\x20\x7f-\x9f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|\*)\.)*'
                      '([^.*>\x01-\x20\x7f-\x9f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|\*|>)$')
$fn$;

-- One row per subject a role may (allow) or may not (deny) publish or
-- subscribe to. NATS applies deny over allow; a role without rows gets no
-- permissions at all.
create table auth.nats_permission (
    role name not null,
    kind text not null check (kind in ('pub_allow', 'pub_deny', 'sub_allow', 'sub_deny')),
    subject text not null check (auth.is_nats_subject(subject)),
    created_at timestamptz not null default now(),
    primary key (role, kind, subject)
);

-- Whether a role may answer requests: publish to the reply subject of a
-- message it received, without a grant on _INBOX.>, at most max_responses
-- times within response_ttl. Null limits mean the NATS server's defaults
-- (nats-server validateResponsePermissions: 1 response, 2 minutes). A role
-- without a row does not answer; limits without allow_responses would
-- mean nothing, so they are refused.
create table auth.nats_role (
    role name primary key,
    allow_responses boolean not null default false,
    max_responses integer check (max_responses > 0),
    response_ttl interval check (response_ttl > interval '0'),
    check (allow_responses or (max_responses is null and response_ttl is null))
);

-- The same role check as auth.user and auth.api_key.
create constraint trigger ensure_nats_permission_role_exists
    after insert or update of role on auth.nats_permission
    for each row execute function auth.check_role_exists();

create constraint trigger ensure_nats_role_role_exists
    after insert or update of role on auth.nats_role
    for each row execute function auth.check_role_exists();

-- Cache invalidation, as for API keys: nats-callout caches a role's
-- permissions, LISTENs on authd_nats and drops the role named by the
-- payload. Sent at commit; one notification per role and transaction.
create function auth.notify_nats_change() returns trigger
language plpgsql as $fn$
begin
    if tg_op in ('UPDATE', 'DELETE') then
        perform pg_notify('authd_nats', old.role);
    end if;
    if tg_op in ('INSERT', 'UPDATE') then
        perform pg_notify('authd_nats', new.role);
    end if;
    return null;
end
$fn$;

create trigger nats_permission_changed
    after insert or update or delete on auth.nats_permission
    for each row execute function auth.notify_nats_change();

create trigger nats_role_changed
    after insert or update or delete on auth.nats_role
    for each row execute function auth.notify_nats_change();
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
drop table auth.nats_role;
drop table auth.nats_permission;
drop function auth.notify_nats_change();
drop function auth.is_nats_subject(text);
-- +goose StatementEnd
