-- The role check as a function the planner can inline.
--
-- auth.role_refusal (00005, 00009) is a SQL function with its own
-- search_path, so PostgreSQL cannot inline it: each statement that calls
-- it plans its body (two joins of pg_roles) again at every execution.
-- In a refresh that was more than half of PostgreSQL's CPU: 0.55 of the
-- 0.84 ms the rotate statement took to execute, measured with EXPLAIN
-- ANALYZE on a 2-CPU VM.
--
-- auth.role_refusals returns the same reason as a set of at most one
-- row. A set-returning SQL function that is not strict, not volatile and
-- has no SET clause is inlined into the statement that reads it in FROM,
-- so authd's statements (prepared, their plans kept) plan it once. Its
-- body is SQL-standard (BEGIN ATOMIC): its names are bound when it is
-- created, not looked up along the caller's search_path, so a session
-- cannot shadow pg_roles for it (the reason 00008 pins search_path on
-- the other functions). auth.role_refusal stays, for the role trigger
-- and for anyone who calls it, and now reads the same rows.

-- +goose Up
-- +goose StatementBegin
create function auth.role_refusals(role name) returns table (reason text)
language sql stable
begin atomic
    select case when p.oid = r.oid then 'it ' else 'it is a member of "' || p.rolname || '", which ' end
           || case
                  when p.rolsuper then 'is a superuser'
                  when p.rolbypassrls then 'has BYPASSRLS'
                  when p.rolcreaterole then 'has CREATEROLE'
                  when p.rolcreatedb then 'has CREATEDB'
                  when p.rolreplication then 'has REPLICATION'
                  when p.rolcanlogin then 'can log in (LOGIN)'
                  when p.rolname = 'authd_app' then 'is authd''s own database role (authd_app)'
                  else 'is a predefined role'
              end
      from pg_catalog.pg_roles r
      join pg_catalog.pg_roles p on pg_catalog.pg_has_role(r.oid, p.oid, 'MEMBER')
     where r.rolname = role
       and (p.rolsuper or p.rolbypassrls or p.rolcreaterole or p.rolcreatedb
            or p.rolreplication or p.rolcanlogin or pg_catalog.starts_with(p.rolname, 'pg_')
            or p.rolname = 'authd_app')
     -- its own attribute first, then the worst of its memberships
     order by p.oid <> r.oid, not p.rolsuper, pg_catalog.starts_with(p.rolname, 'pg_'), p.rolname
     limit 1;
end;

create or replace function auth.role_refusal(role name) returns text
language sql stable strict
set search_path = pg_catalog, pg_temp
as $fn$
    select reason from auth.role_refusals(role)
$fn$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
create or replace function auth.role_refusal(role name) returns text
language sql stable strict
set search_path = pg_catalog, pg_temp
as $fn$
    select case when p.oid = r.oid then 'it ' else 'it is a member of "' || p.rolname || '", which ' end
           || case
                  when p.rolsuper then 'is a superuser'
                  when p.rolbypassrls then 'has BYPASSRLS'
                  when p.rolcreaterole then 'has CREATEROLE'
                  when p.rolcreatedb then 'has CREATEDB'
                  when p.rolreplication then 'has REPLICATION'
                  when p.rolcanlogin then 'can log in (LOGIN)'
                  when p.rolname = 'authd_app' then 'is authd''s own database role (authd_app)'
                  else 'is a predefined role'
              end
      from pg_roles r
      join pg_roles p on pg_has_role(r.oid, p.oid, 'MEMBER')
     where r.rolname = role
       and (p.rolsuper or p.rolbypassrls or p.rolcreaterole or p.rolcreatedb
            or p.rolreplication or p.rolcanlogin or starts_with(p.rolname, 'pg_')
            or p.rolname = 'authd_app')
     -- its own attribute first, then the worst of its memberships
     order by p.oid <> r.oid, not p.rolsuper, starts_with(p.rolname, 'pg_'), p.rolname
     limit 1
$fn$;
drop function auth.role_refusals(name);
-- +goose StatementEnd
