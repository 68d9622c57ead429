-- SuperStack's SQL auth schema, verbatim, for the in-place upgrade test
-- (superstack_test.go). Source: /work/shared/seeds/003_4564886d8bf4caf6.txt,
-- the SuperStack "JWT Authentication" guide:
--   postgres/migrations/01-extensions.sql      (the create extension line)
--   postgres/migrations/02-create_auth_schema.sql (from begin; to commit;)
-- Left out on purpose: the two lines before begin; that put $JWT_SECRET
-- into the server's configuration (a psql meta-command and an ALTER
-- SYSTEM): a test must not change the cluster's configuration, and authd
-- does not read it. Indentation is as the source has it.

-- pgcrypto adds public.crypt and public.hmac, used by auth
create extension pgcrypto;

begin;
-- Create auth schema and tables
create schema auth;
create table auth.user (
username text primary key check (length(username) >= 3),
password text not null check (length(password) < 512),
role name not null check (length(role) < 512)
);
create table auth.refresh_token (
id bigint generated always as identity primary key,
created_at timestamp not null default now(),
token text,
username text
);
-- Enforce that roles exist in pg_roles
create function auth.check_role_exists() returns trigger
language plpgsql as $$
begin
if not exists (select 1 from pg_roles where rolname = new.role) then
raise foreign_key_violation using message = 'unknown database role: ' || new.role;
return null;
end if;
return new;
end
$$;
create constraint trigger ensure_user_role_exists
after insert or update on auth.user
for each row execute procedure auth.check_role_exists();
-- Encrypt passwords on insert/update
create function auth.encrypt_pass() returns trigger
language plpgsql as $$
begin
if tg_op = 'INSERT' or new.password <> old.password then
new.password := crypt(new.password, gen_salt('bf'));
end if;
return new;
end
$$;
create trigger encrypt_pass
before insert or update on auth.user
for each row execute procedure auth.encrypt_pass();
create function auth.url_encode(data bytea) returns text language sql AS $$
select translate(encode(data, 'base64'), E'+/=\n', '-_');
$$ immutable;
create or replace function auth.sign_raw(
payload json,
secret_base64 text, -- can be base64 or raw
algorithm text default 'HS256'
) returns text
language plpgsql immutable as $$
declare
alg text;
clean_secret bytea;
begin
-- Determine algorithm
alg := case algorithm
when 'HS256' then 'sha256'
when 'HS384' then 'sha384'
when 'HS512' then 'sha512'
else 'sha256'
end;
begin
clean_secret := decode(secret_base64, 'base64');
exception when others then
raise exception 'Invalid base64-encoded secret';
end;
return (
with
header as (
select auth.url_encode(convert_to('{"alg":"' || algorithm || '","typ":"JWT"}','utf8')) as data
),
payload_enc as (
select auth.url_encode(convert_to(payload::text,'utf8')) as data
),
signables as (
select header.data || '.' || payload_enc.data as data from header, payload_enc
)
select
signables.data || '.' ||
auth.url_encode(public.hmac(convert_to(signables.data,'utf8'), clean_secret, alg))
from signables
);
end;
$$;
-- Generate JWT access tokens
create function auth.generate_access_token(
role_ text, user_ text, secret text
) returns text
language plpgsql as $$
declare
access_token text;
begin
select auth.sign_raw(row_to_json(r), secret)
into access_token
from (
select
role_ as role,
user_ as username,
user_ as sub,
extract(epoch from now())::integer + 600 as exp
) r;
return access_token;
end;
$$;
-- Login endpoint
create function auth.login(user_ text, pass text) returns void
language plpgsql security definer as $$
declare
access_token text;
headers text;
refresh_token text;
role_ name;
begin
select role into role_
from auth.user
where username = user_
and password = public.crypt(pass, password);
if role_ is null then
raise sqlstate 'PT401' using message = 'Invalid user or password';
end if;
select auth.generate_access_token(role_, user_, current_setting('pgrst.jwt_secret')) into access_token;
refresh_token := public.gen_random_uuid();
insert into auth.refresh_token (token, username) values (refresh_token, user_);
headers := json_build_array(
json_build_object('Set-Cookie', 'access_token=' || access_token || '; Path=/; HttpOnly;'),
json_build_object('Set-Cookie', 'refresh_token=' || refresh_token || '; Path=/rpc/refresh_token; HttpOnly;')
)::text;
perform set_config('response.headers', headers, true);
end;
$$;
-- Logout endpoint
create function auth.logout() returns void
language plpgsql security definer as $$
declare headers text;
begin
headers := '[' ||
'{"Set-Cookie": "access_token=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT;"},' ||
'{"Set-Cookie": "refresh_token=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT;"}' ||
']';
perform set_config('response.headers', headers, true);
end;
$$;
-- Refresh token endpoint
create function auth.refresh_token() returns void
language plpgsql security definer as $$
declare
user_ text;
access_token text;
headers text;
refresh_token_ text;
role_ text;
begin
refresh_token_ := current_setting('request.cookies', true)::json->>'refresh_token';
select username into user_
from auth.refresh_token
where token = refresh_token_
and created_at > now() - interval '30 days';
if user_ is null then
raise sqlstate 'PT401' using message = 'Invalid or expired refresh token';
end if;
select role into role_ from auth.user where username = user_;
if role_ is null then
raise sqlstate 'PT401' using message = 'Unknown user';
end if;
select auth.generate_access_token(role_, user_, current_setting('pgrst.jwt_secret')) into access_token;
headers := '[{"Set-Cookie": "access_token=' || access_token || '; Path=/; HttpOnly;"}]';
perform set_config('response.headers', headers, true);
end;
$$;
commit;
