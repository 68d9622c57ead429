-- authd_app (00008) may read and write every table in auth, password
-- hashes included: a token carrying it, or a role that is a member of it,
-- would hand that to whoever holds the token at PostgREST. So
-- auth.role_refusal refuses it as it refuses a superuser, for users,
-- plans, API keys and NATS grants (the role trigger) and when authd
-- issues a token.

-- +goose Up
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
                  else 'is a predefined role'
              end
      from pg_roles r
      join pg_roles p on pg_has_role(r.oid, p.oid, 'MEMBER')
     where r.rolname = role
       and (p.rolsuper or p.rolbypassrls or p.rolcreaterole or p.rolcreatedb
            or p.rolreplication or p.rolcanlogin or starts_with(p.rolname, 'pg_'))
     order by p.oid <> r.oid, not p.rolsuper, starts_with(p.rolname, 'pg_'), p.rolname
     limit 1
$fn$;
-- +goose StatementEnd
