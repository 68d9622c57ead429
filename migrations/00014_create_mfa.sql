-- TOTP second factor (RFC 6238, issue 14): POST /rpc/mfa_enroll stores a
-- pending factor, POST /rpc/mfa_verify activates it and steps a session up
-- to aal2, `authd user mfa-reset` removes it.
--
--  * auth.mfa_factor: at most one factor per user, pending (verified_at
--    null) until a code proves the user has it. The secret is stored as
--    it is: a TOTP check needs it (as GoTrue stores it). last_step is the
--    time step of the last code accepted: a code is accepted once, by a
--    compare-and-set on it.
--  * auth.mfa_recovery_code: single-use codes, only their SHA-256 (a code
--    is 80 random bits, so a fast hash leaves nothing to brute-force, as
--    for refresh tokens).
--  * auth.session remembers its assurance (aal, amr: the claims of its
--    access tokens), so that a refresh keeps it, and whether it waits for
--    a second factor (mfa_pending: its tokens are short, and it ends
--    AUTHD_MFA_PENDING_TTL after login unless verified).
--  * auth.nats_role.require_mfa: the NATS callout admits a role marked so
--    only with an aal2 access token (`authd nats require-mfa`).

-- +goose Up
-- +goose StatementBegin
create table auth.mfa_factor (
    id uuid primary key,
    username text not null unique references auth.user (username) on delete cascade on update cascade,
    secret text not null,
    created_at timestamptz not null default now(),
    verified_at timestamptz,
    last_step bigint
);

create table auth.mfa_recovery_code (
    code_hash bytea primary key check (octet_length(code_hash) = 32),
    username text not null references auth.user (username) on delete cascade on update cascade,
    created_at timestamptz not null default now(),
    used_at timestamptz
);

create index mfa_recovery_code_username on auth.mfa_recovery_code (username);

alter table auth.session
    add column aal text not null default 'aal1' check (aal in ('aal1', 'aal2')),
    add column amr text[] not null default '{pwd}',
    add column mfa_pending boolean not null default false;

-- mfa_verified: the tokens of a session stepped up to aal2, replaced by
-- its new ones; mfa_reset: the sessions an administrator's mfa-reset ended.
alter table auth.refresh_token
    drop constraint refresh_token_revoked_reason_check,
    add constraint refresh_token_revoked_reason_check
        check (revoked_reason in ('rotated', 'logout', 'password_change', 'role_change',
                                  'user_disabled', 'admin_logout', 'superseded',
                                  'mfa_verified', 'mfa_reset'));

alter table auth.nats_role
    add column require_mfa boolean not null default false;

-- serve enrolls, verifies and spends codes; the CLI resets.
grant select, insert, update, delete on auth.mfa_factor, auth.mfa_recovery_code to authd_app;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
alter table auth.nats_role drop column require_mfa;
update auth.refresh_token set revoked_reason = 'logout' where revoked_reason in ('mfa_verified', 'mfa_reset');
alter table auth.refresh_token
    drop constraint refresh_token_revoked_reason_check,
    add constraint refresh_token_revoked_reason_check
        check (revoked_reason in ('rotated', 'logout', 'password_change', 'role_change',
                                  'user_disabled', 'admin_logout', 'superseded'));
alter table auth.session
    drop column mfa_pending,
    drop column amr,
    drop column aal;
drop table auth.mfa_recovery_code;
drop table auth.mfa_factor;
-- +goose StatementEnd
