-- Roles PostgREST needs, created once when the compose stack's database is
-- first initialised (the postgres image runs /docker-entrypoint-initdb.d/*
-- through psql, as the superuser, only while the data volume is empty).
--
--   anon           what a request without a JWT runs as; cannot log in.
--   authenticator  what PostgREST logs in as; noinherit, so it has none of
--                  its members' privileges until it switches role per request
--                  (to anon, or to the role claim of an authd token).
--
-- The password comes from AUTHENTICATOR_PASSWORD in the postgres service's
-- environment (compose.yaml; a dev-only default). psql's :'var' quotes it as
-- a literal. Safe to run again: existing roles are left alone.

\getenv authenticator_password AUTHENTICATOR_PASSWORD
\if :{?authenticator_password}
\else
    do $$ begin raise exception 'AUTHENTICATOR_PASSWORD is not set in the postgres container'; end $$;
\endif

select 'create role anon nologin'
where not exists (select from pg_roles where rolname = 'anon')
\gexec

select format('create role authenticator login noinherit password %L', :'authenticator_password')
where not exists (select from pg_roles where rolname = 'authenticator')
\gexec

grant anon to authenticator;
