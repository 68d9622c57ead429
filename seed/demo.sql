-- Demo data for development only: never part of the migrations. Running it
-- twice changes nothing.

do $$
declare
    r name;
begin
    -- basic_subscriber is the demo user's role; web_anon, web_trial and
    -- web_paid are the roles of the demo API key plans below.
    foreach r in array array['basic_subscriber', 'web_anon', 'web_trial', 'web_paid']::name[] loop
        if not exists (select 1 from pg_roles where rolname = r) then
            execute format('create role %I nologin', r);
        end if;
        -- PostgREST connects as authenticator and switches to the token's
        -- role; without this grant it would refuse the demo tokens.
        if exists (select 1 from pg_roles where rolname = 'authenticator')
           and not pg_has_role('authenticator', r, 'MEMBER') then
            execute format('grant %I to authenticator', r);
        end if;
    end loop;
end
$$;

-- Password "demo", bcrypt cost 10.
insert into auth.user (username, password_hash, role)
values ('demo', '$2a$10$AkhwIoxXTUpEAZuLrBTHveREaJIS70RD/p3QDHIrFIsbrGXJxdAKm', 'basic_subscriber')
on conflict (username) do nothing;

-- API key plans, as the nginx gateway this replaces had them. Keys are
-- made with `authd apikey create --plan NAME`; the seed makes none, since a
-- key written here would be known to everyone who reads this file.
insert into auth.plan (name, role, requests_per_minute, key_lifetime)
values ('free', 'web_anon', 60, null),
       ('free_trial', 'web_trial', 60, interval '30 days'),
       ('pro', 'web_paid', 600, null)
on conflict (name) do nothing;
