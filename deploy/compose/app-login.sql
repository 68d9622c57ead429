-- The login role `authd serve` uses in the compose stack: AUTHD_DB_USER,
-- with password AUTHD_DB_PASSWORD, a member of authd_app and nothing more.
-- authd_app (NOLOGIN) is created and granted exactly what serve needs by
-- the migrations (00008), so this runs after them, as the superuser, from
-- the app-login service of compose.yaml; on every `up`, so that it also
-- reaches an existing data volume and a changed password takes effect.
-- The same statements, by hand, outside compose:
--
--   create role authd login password '...' in role authd_app;
--
-- psql's :'var' quotes a value as a literal, and format's %I and %L quote
-- the name and the password.

\getenv app_user AUTHD_DB_USER
\getenv app_password AUTHD_DB_PASSWORD
\if :{?app_user}
\else
    do $$ begin raise exception 'AUTHD_DB_USER is not set in the app-login container'; end $$;
\endif
\if :{?app_password}
\else
    do $$ begin raise exception 'AUTHD_DB_PASSWORD is not set in the app-login container'; end $$;
\endif

select format('create role %I login', :'app_user')
where not exists (select from pg_roles where rolname = :'app_user')
\gexec

-- LOGIN and the password every time; and never more than authd_app gives.
select format('alter role %I login nosuperuser nocreatedb nocreaterole noreplication nobypassrls password %L',
              :'app_user', :'app_password')
\gexec

select format('grant authd_app to %I', :'app_user')
\gexec
