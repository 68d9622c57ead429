-- Users an administrator can manage (security review, issue 12):
--
--  * Changing a user's password or role, or disabling them, revokes their
--    sessions in the same transaction, by a trigger on auth.user, so that
--    a change made with plain SQL does it too. Deleting a user deletes
--    their sessions (on delete cascade, as before).
--  * auth.user.disabled_at: a disabled user cannot log in or refresh.
--  * A role no token may carry is refused by the role trigger of every
--    table that names a role, and by authd when it issues a token.
--  * NOTIFY on channel authd_session, for caches of who is logged in.
--
-- Channel authd_session, payload: a username (never a token or hash). It is
-- sent, at commit, when one of that user's sessions is revoked (logout,
-- refresh token replay, an administrator, or the changes above), and when
-- the user is deleted, renamed, disabled, enabled, or their password or
-- role changes. A listener drops whatever it caches for that user and
-- reads the database again. PostgreSQL sends one notification per payload
-- and transaction, however many rows changed. A password re-hash at login
-- (same password, higher bcrypt cost) sends nothing and revokes nothing:
-- authd marks that update with the transaction setting authd.rehash = 'on'.

-- +goose Up
-- +goose StatementBegin

alter table auth.user add column disabled_at timestamptz;

-- Why a refresh token stopped working, now also: the user's password or
-- role changed, the user was disabled, or an administrator ended the
-- session (authd user logout).
alter table auth.refresh_token
    drop constraint refresh_token_revoked_reason_check,
    add constraint refresh_token_revoked_reason_check check (revoked_reason in
        ('rotated', 'logout', 'password_change', 'role_change', 'user_disabled', 'admin_logout'));

-- Ends every live session of a user (or only the session one_session),
-- marking their live refresh tokens with reason, as authd's logout does
-- for one session. Returns how many sessions it ended.
create function auth.revoke_user_sessions(who text, reason text, one_session uuid default null) returns integer
language sql volatile as $fn$
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

create function auth.user_changed() returns trigger
language plpgsql as $fn$
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

-- After the row is written, so that the sessions (renamed along by on
-- update cascade) are found under the new name.
create trigger user_changed
    after update or delete on auth.user
    for each row execute function auth.user_changed();

create function auth.notify_session_revoked() returns trigger
language plpgsql as $fn$
begin
    perform pg_notify('authd_session', new.username);
    return null;
end
$fn$;

create trigger session_revoked
    after update of revoked_at on auth.session
    for each row
    when (old.revoked_at is null and new.revoked_at is not null)
    execute function auth.notify_session_revoked();

-- Why a role may not be in a token, or null when it may (or does not
-- exist: that is check_role_exists's refusal). PostgREST switches to the
-- token's role, so a token naming a powerful role hands its power to
-- whoever holds the token. Refused: a role that is a superuser, has
-- BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION, can log in (a database
-- account such as PostgREST's authenticator or authd's own, never a role
-- for tokens: PostgREST's roles are NOLOGIN), or is a predefined pg_* role
-- -- and a role that is a member of such a role, directly or not, since
-- it may SET ROLE to it. The owner of the database is a member of
-- pg_database_owner, so it is refused too.
--
-- The authenticator is recognised by LOGIN rather than by name: the
-- database cannot read AUTHD_AUTHENTICATOR_ROLE, and a rule that needs no
-- setting cannot drift from it. authd's commands also refuse the role that
-- AUTHD_AUTHENTICATOR_ROLE names.
create function auth.role_refusal(role name) returns text
language sql stable strict as $fn$
    select case when p.oid = r.oid then 'it ' else 'it is a member of "' || p.rolname || '", which ' end
           || case
                  when p.rolsuper then 'is a superuser'
                  when p.rolbypassrls then 'has BYPASSRLS'
                  when p.rolcreaterole then 'has CREATEROLE'
                  when p.rolcreatedb then 'has CREATEDB'
                  when p.rolreplication then 'has REPLICATION'
                  when p.rolcanlogin then 'can log in (LOGIN)'
                  else 'is a predefined role'
              end
      from pg_roles r
      join pg_roles p on pg_has_role(r.oid, p.oid, 'MEMBER')
     where r.rolname = role
       and (p.rolsuper or p.rolbypassrls or p.rolcreaterole or p.rolcreatedb
            or p.rolreplication or p.rolcanlogin or starts_with(p.rolname, 'pg_'))
     -- its own attribute first, then the worst of its memberships
     order by p.oid <> r.oid, not p.rolsuper, starts_with(p.rolname, 'pg_'), p.rolname
     limit 1
$fn$;

-- The role trigger of auth.user, auth.plan, auth.api_key,
-- auth.nats_permission and auth.nats_role (created by 00001-00003), now
-- also refusing the roles auth.role_refusal names, with SQLSTATE 23514 and
-- constraint name role_not_privileged; the reason is the error's detail.
-- Rows written before this migration are not checked here: authd refuses
-- their tokens when it issues them.
create or replace function auth.check_role_exists() returns trigger
language plpgsql as $fn$
declare
    refusal text;
begin
    if not exists (select 1 from pg_roles where rolname = new.role) then
        raise foreign_key_violation using
            message = 'unknown database role: ' || new.role,
            hint = 'create the role first: create role ' || quote_ident(new.role) || ';';
    end if;
    refusal := auth.role_refusal(new.role);
    if refusal is not null then
        raise check_violation using
            message = 'role "' || new.role || '" may not be the role of a token: ' || refusal,
            detail = refusal,
            constraint = 'role_not_privileged',
            hint = 'use a NOLOGIN role without SUPERUSER, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION, '
                   'not a predefined pg_* role nor a member of one of those';
    end if;
    return null;
end
$fn$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
create or replace function auth.check_role_exists() returns trigger
language plpgsql as $fn$
begin
    if not exists (select 1 from pg_roles where rolname = new.role) then
        raise foreign_key_violation using
            message = 'unknown database role: ' || new.role,
            hint = 'create the role first: create role ' || quote_ident(new.role) || ';';
    end if;
    return null;
end
$fn$;
drop function auth.role_refusal(name);
drop trigger session_revoked on auth.session;
drop function auth.notify_session_revoked();
drop trigger user_changed on auth.user;
drop function auth.user_changed();
drop function auth.revoke_user_sessions(text, text, uuid);
-- The old constraint knows only these two reasons: a token revoked for
-- another one is, as far as it can say, logged out.
update auth.refresh_token set revoked_reason = 'logout'
 where revoked_reason not in ('rotated', 'logout');
alter table auth.refresh_token
    drop constraint refresh_token_revoked_reason_check,
    add constraint refresh_token_revoked_reason_check check (revoked_reason in ('rotated', 'logout'));
-- Disabled users are enabled again; their revoked sessions stay revoked.
alter table auth.user drop column disabled_at;
-- +goose StatementEnd
