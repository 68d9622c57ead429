-- Self-service sessions and passwords (issue 14):
--
--  * auth.session remembers where a login came from: the client address
--    (AUTHD_TRUSTED_PROXIES-aware, as authd logs it) and the User-Agent,
--    cut to 200 bytes. Both are the client's word, shown back to the user
--    in /rpc/sessions so they can tell their devices apart; never a token.
--    Sessions from before this migration have neither (null).
--  * A password change revokes every session of the user but one when the
--    transaction sets authd.keep_session to that session's id: /rpc/
--    change_password keeps the caller's own session (GoTrue's behaviour).
--    Only a password change honours it: a role change or a disable still
--    ends every session.

-- +goose Up
-- +goose StatementBegin
alter table auth.session
    add column client_addr text,
    add column user_agent text,
    add constraint session_user_agent_length check (octet_length(user_agent) <= 200);

-- An argument is added, so the function is replaced, not redefined: with
-- both overloads a call naming three arguments would be ambiguous.
drop function auth.revoke_user_sessions(text, text, uuid);

-- Ends every live session of a user (or only the session one_session),
-- except keep_session, marking their live refresh tokens with reason, as
-- authd's logout does for one session. Returns how many sessions it ended.
create function auth.revoke_user_sessions(who text, reason text, one_session uuid default null,
                                          keep_session uuid default null) returns integer
language sql volatile
set search_path = pg_catalog, pg_temp
as $fn$
    with ended as (
        update auth.session s set revoked_at = now()
         where s.username = who
           and (one_session is null or s.id = one_session)
           and (keep_session is null or s.id <> keep_session)
           and s.revoked_at is null
        returning s.id
    ), marked as (
        update auth.refresh_token t set revoked_at = now(), revoked_reason = reason
          from ended
         where t.session_id = ended.id
           and t.revoked_at is null
           and t.expires_at > now()
    )
    select count(*)::integer from ended
$fn$;

create or replace function auth.user_changed() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $fn$
declare
    reason text;
    keep uuid;
begin
    if tg_op = 'DELETE' then
        perform pg_notify('authd_session', old.username);
        return null;
    end if;
    reason := case
        when new.disabled_at is not null and old.disabled_at is null then 'user_disabled'
        when new.role is distinct from old.role then 'role_change'
        when new.password_hash is distinct from old.password_hash
             and coalesce(current_setting('authd.rehash', true), '') <> 'on' then 'password_change'
    end;
    if reason = 'password_change' then
        keep := nullif(coalesce(current_setting('authd.keep_session', true), ''), '')::uuid;
    end if;
    if reason is not null then
        perform auth.revoke_user_sessions(new.username, reason, null, keep);
    end if;
    if reason is not null
       or new.disabled_at is distinct from old.disabled_at
       or new.username is distinct from old.username then
        perform pg_notify('authd_session', old.username);
        perform pg_notify('authd_session', new.username);
    end if;
    return null;
end
$fn$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
create or replace function auth.user_changed() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $fn$
declare
    reason text;
begin
    if tg_op = 'DELETE' then
        perform pg_notify('authd_session', old.username);
        return null;
    end if;
    reason := case
        when new.disabled_at is not null and old.disabled_at is null then 'user_disabled'
        when new.role is distinct from old.role then 'role_change'
        when new.password_hash is distinct from old.password_hash
             and coalesce(current_setting('authd.rehash', true), '') <> 'on' then 'password_change'
    end;
    if reason is not null then
        perform auth.revoke_user_sessions(new.username, reason);
    end if;
    if reason is not null
       or new.disabled_at is distinct from old.disabled_at
       or new.username is distinct from old.username then
        perform pg_notify('authd_session', old.username);
        perform pg_notify('authd_session', new.username);
    end if;
    return null;
end
$fn$;
drop function auth.revoke_user_sessions(text, text, uuid, uuid);
create function auth.revoke_user_sessions(who text, reason text, one_session uuid default null) returns integer
language sql volatile
set search_path = pg_catalog, pg_temp
as $fn$
    with ended as (
        update auth.session s set revoked_at = now()
         where s.username = who
           and (one_session is null or s.id = one_session)
           and s.revoked_at is null
        returning s.id
    ), marked as (
        update auth.refresh_token t set revoked_at = now(), revoked_reason = reason
          from ended
         where t.session_id = ended.id
           and t.revoked_at is null
           and t.expires_at > now()
    )
    select count(*)::integer from ended
$fn$;
alter table auth.session
    drop constraint session_user_agent_length,
    drop column user_agent,
    drop column client_addr;
-- +goose StatementEnd
