-- Demo data for development only: never part of the migrations. Running it
-- twice changes nothing.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'basic_subscriber') then
        create role basic_subscriber nologin;
    end if;
    -- PostgREST connects as authenticator and switches to the token's
    -- role; without this grant it would refuse the demo user's tokens.
    if exists (select 1 from pg_roles where rolname = 'authenticator')
       and not pg_has_role('authenticator', 'basic_subscriber', 'MEMBER') then
        grant basic_subscriber to authenticator;
    end if;
end
$$;

-- Password "demo", bcrypt cost 10.
insert into auth.user (username, password_hash, role)
values ('demo', '$2a$10$AkhwIoxXTUpEAZuLrBTHveREaJIS70RD/p3QDHIrFIsbrGXJxdAKm', 'basic_subscriber')
on conflict (username) do nothing;
