-- The role request and job work switches to (SET LOCAL ROLE) for tenant-scoped work: it owns
-- nothing, so row-level security applies to it on every tenant table.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'trellis_app') then
    create role trellis_app nologin;
  end if;
end
$$;

-- Whoever migrates must be able to switch to the role (a superuser already can).
do $$
begin
  if not exists (
    select 1 from pg_auth_members m join pg_roles r on r.oid = m.roleid
     where r.rolname = 'trellis_app' and m.member = (select oid from pg_roles where rolname = current_user)
  ) and not (select rolsuper from pg_roles where rolname = current_user) then
    execute format('grant trellis_app to %I', current_user);
  end if;
end
$$;

-- Tables the migrating user creates from now on are usable by trellis_app (RLS still applies).
alter default privileges grant select, insert, update, delete on tables to trellis_app;
alter default privileges grant usage, select on sequences to trellis_app;

grant usage on schema core to trellis_app;
grant select, insert, update, delete on all tables in schema core to trellis_app;
grant usage, select on all sequences in schema core to trellis_app;

-- Tenant work enqueues jobs and publishes events inside its transaction.
grant usage on schema graphile_worker to trellis_app;
grant select, insert, update, delete on all tables in schema graphile_worker to trellis_app;
grant usage, select on all sequences in schema graphile_worker to trellis_app;
grant execute on all functions in schema graphile_worker to trellis_app;

-- The org of the current transaction, as set by the platform's tenancy helper.
create function current_org_id() returns uuid
language sql stable
as $$ select nullif(current_setting('app.org_id', true), '')::uuid $$;

grant execute on function current_org_id() to trellis_app;

-- Makes a table with an org_id column a tenant table: row-level security, forced on the owner
-- too. In a tenant transaction (role trellis_app, app.org_id set) only that org's rows are
-- visible or writable; platform work (no tenant set, not trellis_app) sees every row.
create function enable_tenant_rls(target regclass) returns void
language plpgsql
as $$
begin
  execute format('alter table %s enable row level security', target);
  execute format('alter table %s force row level security', target);
  execute format(
    'create policy tenant_isolation on %s using (org_id = core.current_org_id()) with check (org_id = core.current_org_id())',
    target
  );
  execute format(
    'create policy platform_access on %s using (core.current_org_id() is null and current_user <> ''trellis_app'') '
    'with check (core.current_org_id() is null and current_user <> ''trellis_app'')',
    target
  );
end
$$;

-- Who did what, for every security and admin action and every write a plugin audits.
create table audit_log (
  id bigserial primary key,
  org_id uuid,
  actor_kind text not null,
  actor_id text not null,
  action text not null,
  target_type text,
  target_id text,
  request_id text,
  details jsonb not null default '{}',
  at timestamptz not null default now()
);
create index audit_log_org_id_idx on audit_log (org_id, id desc);
create index audit_log_org_action_idx on audit_log (org_id, action, id desc);
create index audit_log_org_actor_idx on audit_log (org_id, actor_id, id desc);
create index audit_log_org_target_idx on audit_log (org_id, target_type, target_id, id desc);
select enable_tenant_rls('audit_log');
grant select, insert on audit_log to trellis_app;
revoke update, delete on audit_log from trellis_app;

-- Stored first responses of POST requests sent with an Idempotency-Key (kept 24 h).
create table idempotency_keys (
  scope text not null,
  key text not null,
  request_hash text not null,
  status text not null check (status in ('in_progress', 'completed')),
  response_status integer,
  response_headers jsonb,
  response_body text,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  primary key (scope, key)
);
create index idempotency_keys_expires_at_idx on idempotency_keys (expires_at);
revoke all on idempotency_keys from trellis_app;
