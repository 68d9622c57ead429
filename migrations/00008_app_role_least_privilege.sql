-- Least privilege for `authd serve` (security review, issue 12).
--
-- authd_app is a NOLOGIN group role holding exactly what authd needs at
-- run time in this database: CONNECT, USAGE on schema auth, SELECT,
-- INSERT, UPDATE and DELETE on its tables, and SELECT on goose's version
-- table (serve refuses to start while a migration is pending). Nothing on
-- sequences: an identity column (auth.refresh_token.id) draws from its own
-- on the table's INSERT privilege alone, so later tables use identity, not
-- serial. Nothing else: it cannot create, alter, drop or truncate
-- anything, nor grant. The operator gives authd a
-- LOGIN role that is a member of it:
--
--     create role authd login password '...' in role authd_app;
--
-- and runs the migrations as the owner of the schema, never as that role.
-- LISTEN, pg_notify() and reading pg_roles / pg_auth_members (the role
-- checks) need no grant: PUBLIC has them.
--
-- Roles are cluster-wide, grants are not: authd_app is created once per
-- cluster, if missing, and every database migrated grants it its own
-- objects. Later migrations grant what they add explicitly (no ALTER
-- DEFAULT PRIVILEGES: those follow whichever role creates the object, and
-- would also cover tables an operator adds to auth by hand).
--
-- Every function in auth gets search_path = pg_catalog, pg_temp: without
-- it, a session can shadow pg_roles with a temporary table of its own and
-- pass the role checks (pg_temp comes first for relations unless it is
-- listed); the bodies qualify everything else they use.

-- +goose Up
-- +goose StatementBegin
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'authd_app') then
        create role authd_app nologin;
    end if;
exception
    -- Another database of this cluster created it after our check: once
    -- that transaction commits, ours fails on pg_authid's unique index
    -- (23505), or sees the role (42710). Either way it exists now.
    when unique_violation or duplicate_object then
        null;
    when insufficient_privilege then
        raise exception 'cannot create role authd_app: %', sqlerrm using
            errcode = 'insufficient_privilege',
            hint = 'as a superuser (or a role with CREATEROLE) run once per cluster: create role authd_app nologin;';
end
$$;

do $$
begin
    execute format('grant connect on database %I to authd_app', current_database());
end
$$;
grant usage on schema auth to authd_app;
grant select, insert, update, delete on all tables in schema auth to authd_app;
-- Unqualified, as goose names it: the table is where goose put it.
grant select on goose_db_version to authd_app;

do $$
declare
    f record;
begin
    for f in select p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) as args
               from pg_catalog.pg_proc p
              where p.pronamespace = 'auth'::regnamespace
    loop
        execute format('alter routine auth.%I(%s) set search_path = pg_catalog, pg_temp', f.proname, f.args);
    end loop;
end
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
-- The role stays: other databases of the cluster may still grant it
-- theirs. Once none does: drop role authd_app;
do $$
declare
    f record;
begin
    for f in select p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) as args
               from pg_catalog.pg_proc p
              where p.pronamespace = 'auth'::regnamespace
    loop
        execute format('alter routine auth.%I(%s) reset search_path', f.proname, f.args);
    end loop;
    if exists (select from pg_catalog.pg_roles where rolname = 'authd_app') then
        revoke select on goose_db_version from authd_app;
        revoke select, insert, update, delete on all tables in schema auth from authd_app;
        revoke usage on schema auth from authd_app;
        execute format('revoke connect on database %I from authd_app', current_database());
    end if;
end
$$;
-- +goose StatementEnd
