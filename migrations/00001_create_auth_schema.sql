-- authd's auth schema. Written to run both on an empty database and on one
-- that already has the SuperStack SQL schema (auth.user with a pgcrypto
-- encrypt_pass trigger, auth.refresh_token with plaintext tokens): every
-- statement either creates what is missing or converts what is there.

-- +goose Up
-- +goose StatementBegin
create schema if not exists auth;

create table if not exists auth.user (
    username text primary key check (length(username) >= 3),
    password_hash text not null,
    role name not null
);

-- SuperStack named the hash column "password" and filled it from a trigger
-- that hashed whatever was written. authd hashes in Go and writes only
-- hashes, so the trigger must go or it would hash the hash.
drop trigger if exists encrypt_pass on auth.user;
drop function if exists auth.encrypt_pass();

do $$
begin
    if exists (select 1 from information_schema.columns
               where table_schema = 'auth' and table_name = 'user' and column_name = 'password') then
        alter table auth.user rename column password to password_hash;
    end if;
end
$$;

-- SuperStack's RPC functions read the old columns and the plaintext token
-- table; authd replaces them, so they are removed rather than left broken.
drop function if exists auth.login(text, text);
drop function if exists auth.logout();
drop function if exists auth.refresh_token();
drop function if exists auth.generate_access_token(text, text, text);
drop function if exists auth.sign_raw(json, text, text);
drop function if exists auth.url_encode(bytea);

-- Only bcrypt hashes are stored: a plain SQL insert of a password (as the
-- SuperStack seed did) now fails instead of storing it in clear.
-- pgcrypto's gen_salt('bf') hashes are $2a$06$..., which still match.
alter table auth.user
    add column if not exists created_at timestamptz not null default now(),
    add column if not exists updated_at timestamptz not null default now(),
    add constraint user_password_hash_is_bcrypt
        check (password_hash ~ '^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$');

-- Port of SuperStack's check_role_exists: a user's role must be a real
-- database role, whoever writes the row. A constraint trigger runs at the end
-- of the statement, so a role created in the same transaction counts.
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

drop trigger if exists ensure_user_role_exists on auth.user;
create constraint trigger ensure_user_role_exists
    after insert or update of role on auth.user
    for each row execute function auth.check_role_exists();

-- SuperStack kept refresh tokens in clear, never rotated or revoked them.
-- Those tokens stop working here: their holders log in again.
drop table if exists auth.refresh_token;

-- One row per login. Revoking a session kills every refresh token in it.
create table auth.session (
    id uuid primary key,
    username text not null references auth.user (username) on update cascade on delete cascade,
    created_at timestamptz not null default now(),
    revoked_at timestamptz
);
create index session_username_idx on auth.session (username);

-- Refresh tokens are opaque random strings; only their SHA-256 is stored.
-- Each refresh spends one token (revoked_at, reason 'rotated') and inserts
-- its child (parent_id), so a reused token can be traced to its session.
create table auth.refresh_token (
    id bigint generated always as identity primary key,
    token_hash bytea not null unique check (length(token_hash) = 32),
    session_id uuid not null references auth.session (id) on delete cascade,
    parent_id bigint references auth.refresh_token (id) on delete cascade,
    issued_at timestamptz not null default now(),
    expires_at timestamptz not null,
    revoked_at timestamptz,
    revoked_reason text check (revoked_reason in ('rotated', 'logout'))
);
create index refresh_token_session_idx on auth.refresh_token (session_id);
create index refresh_token_parent_idx on auth.refresh_token (parent_id);
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
drop schema auth cascade;
-- +goose StatementEnd
