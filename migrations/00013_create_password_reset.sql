-- Password reset tokens (issue 14): POST /rpc/request_password_reset and
-- `authd user reset-link` store one, POST /rpc/reset_password spends it.
--
-- Only the SHA-256 of a token is stored: the token is 256 random bits,
-- so a fast hash leaves nothing to brute-force, and a copy of this table
-- resets nobody's password. A user has at most one live token: a newer
-- request deletes the older ones in the same transaction, under a lock
-- on the user's row. A spent token keeps its row (used_at) until the
-- next request or the user's deletion; the row is a few dozen bytes.

-- +goose Up
-- +goose StatementBegin
create table auth.password_reset (
    token_hash bytea primary key check (octet_length(token_hash) = 32),
    username text not null references auth.user (username) on delete cascade on update cascade,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at timestamptz
);

create index password_reset_username on auth.password_reset (username);

-- serve and the CLI insert, spend (update used_at) and replace tokens.
grant select, insert, update, delete on auth.password_reset to authd_app;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
drop table auth.password_reset;
-- +goose StatementEnd
