-- Sessions get an absolute end, and refresh tokens issued inside the reuse
-- grace window are marked so that one chain survives a refresh race.

-- +goose Up
-- +goose StatementBegin

-- A session ends at expires_at however often it refreshes (set at login
-- from AUTHD_SESSION_LIFETIME; every refresh token's expiry is capped by
-- it). A session from before this migration ends when its newest refresh
-- token would have expired: nobody is logged out by the upgrade, and no
-- session lives more than one refresh TTL longer.
alter table auth.session add column expires_at timestamptz;
update auth.session s
   set expires_at = coalesce((select max(t.expires_at) from auth.refresh_token t where t.session_id = s.id), now());
alter table auth.session alter column expires_at set not null;

-- A token is contested when a spent parent earned a second child within
-- the grace window: its family has several live members, and the first
-- one rotated ends the others (revoked_reason 'superseded'). Presenting a
-- superseded token is a replay.
alter table auth.refresh_token
    add column contested boolean not null default false,
    drop constraint refresh_token_revoked_reason_check,
    add constraint refresh_token_revoked_reason_check
        check (revoked_reason in ('rotated', 'logout', 'password_change', 'role_change',
                                  'user_disabled', 'admin_logout', 'superseded'));
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
-- A superseded token stays dead, as a logged-out one.
update auth.refresh_token set revoked_reason = 'logout' where revoked_reason = 'superseded';
alter table auth.refresh_token
    drop constraint refresh_token_revoked_reason_check,
    add constraint refresh_token_revoked_reason_check check (revoked_reason in
        ('rotated', 'logout', 'password_change', 'role_change', 'user_disabled', 'admin_logout')),
    drop column contested;
alter table auth.session drop column expires_at;
-- +goose StatementEnd
