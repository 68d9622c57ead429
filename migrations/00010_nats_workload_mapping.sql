-- Kubernetes workloads on NATS (issue 13): a service account, connecting
-- through the callout with its projected token, gets the NATS grants of
-- the role its namespace/name maps to here. Managed with `authd nats
-- map|unmap|mappings`, or plain SQL.

-- +goose Up
-- +goose StatementBegin

-- pattern is NAMESPACE/NAME or NAMESPACE/* (every service account of the
-- namespace); a service account with both gets the exact one's role. The
-- namespace is a DNS label, the name a DNS subdomain, as Kubernetes
-- names them (store.CheckNATSWorkloadPattern applies the same rule).
create table auth.nats_workload (
    pattern text primary key check (
        pattern ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?/([a-z0-9]([-a-z0-9.]*[a-z0-9])?|\*)$'
        and char_length(split_part(pattern, '/', 1)) <= 63
        and char_length(split_part(pattern, '/', 2)) <= 253),
    role name not null,
    created_at timestamptz not null default now()
);

-- The same role check as every table that names a role: the role exists
-- and is one a token may carry.
create constraint trigger ensure_nats_workload_role_exists
    after insert or update of role on auth.nats_workload
    for each row execute function auth.check_role_exists();

-- The callout caches what a service account maps to; a change drops the
-- old and the new role on channel authd_nats, as a grant does.
create trigger nats_workload_changed
    after insert or update or delete on auth.nats_workload
    for each row execute function auth.notify_nats_change();

-- serve and nats-callout only read it; `authd nats map` writes it as the
-- owner, like the migrations.
grant select on auth.nats_workload to authd_app;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
drop table auth.nats_workload;
-- +goose StatementEnd
