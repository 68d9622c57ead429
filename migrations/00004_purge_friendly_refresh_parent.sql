-- Expired refresh tokens are purged in the background. A spent token's
-- row links its child through parent_id; deleting an expired parent must
-- not take its still-valid child with it, so the link is cleared instead.

-- +goose Up
alter table auth.refresh_token
    drop constraint refresh_token_parent_id_fkey,
    add constraint refresh_token_parent_id_fkey
        foreign key (parent_id) references auth.refresh_token (id) on delete set null;

-- Finding expired tokens and empty sessions without a full scan.
create index refresh_token_expires_idx on auth.refresh_token (expires_at);

-- +goose Down
drop index auth.refresh_token_expires_idx;
alter table auth.refresh_token
    drop constraint refresh_token_parent_id_fkey,
    add constraint refresh_token_parent_id_fkey
        foreign key (parent_id) references auth.refresh_token (id) on delete cascade;
