-- Organisations and users are global: a user may belong to several organisations. Tenant work
-- (role trellis_app) reads only its own organisation and its own members, and never a
-- password hash; login, refresh and token verification run as platform work.
create table orgs (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  created_at timestamptz not null default now()
);

create table users (
  id uuid primary key default gen_random_uuid(),
  email text not null,
  -- scrypt$<log2 N>$<r>$<p>$<salt>$<hash>, salt and hash base64url
  password_hash text not null,
  created_at timestamptz not null default now()
);
create unique index users_email_key on users (lower(email));

create table memberships (
  org_id uuid not null references orgs (id) on delete cascade,
  user_id uuid not null references users (id) on delete cascade,
  role text not null check (role in ('owner', 'admin', 'staff', 'viewer')),
  created_at timestamptz not null default now(),
  primary key (org_id, user_id)
);
-- Login picks a user's first membership; the last-owner check reads an org's owners.
create index memberships_user_idx on memberships (user_id, created_at, org_id);
create index memberships_org_role_idx on memberships (org_id, role);
select core.enable_tenant_rls('memberships');

alter table orgs enable row level security;
alter table orgs force row level security;
create policy tenant_read on orgs for select using (id = core.current_org_id());
create policy platform_access on orgs
  using (core.current_org_id() is null and current_user <> 'trellis_app')
  with check (core.current_org_id() is null and current_user <> 'trellis_app');
revoke insert, update, delete on orgs from trellis_app;

-- A tenant sees the users who are members of it (memberships' own policy narrows the subquery).
alter table users enable row level security;
alter table users force row level security;
create policy tenant_read on users for select
  using (exists (select 1 from memberships m where m.user_id = users.id));
create policy platform_access on users
  using (core.current_org_id() is null and current_user <> 'trellis_app')
  with check (core.current_org_id() is null and current_user <> 'trellis_app');
revoke all on users from trellis_app;
grant select (id, email, created_at) on users to trellis_app;

create table api_keys (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references orgs (id) on delete cascade,
  name text not null,
  permissions text[] not null,
  -- sha256 of the secret part; the secret itself is shown once and never stored
  secret_hash bytea not null,
  created_by text not null,
  created_at timestamptz not null default now(),
  expires_at timestamptz,
  revoked_at timestamptz,
  last_used_at timestamptz
);
create index api_keys_org_created_idx on api_keys (org_id, created_at desc, id);
select core.enable_tenant_rls('api_keys');

-- A login session: every refresh token it rotates through belongs to one family, and reuse
-- of a rotated token revokes the family (so every token of it) at once.
create table refresh_families (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references orgs (id) on delete cascade,
  user_id uuid not null references users (id) on delete cascade,
  created_at timestamptz not null default now(),
  revoked_at timestamptz
);
create index refresh_families_user_idx on refresh_families (user_id);
select core.enable_tenant_rls('refresh_families');

create table refresh_tokens (
  -- sha256 of the token
  token_hash bytea primary key,
  family_id uuid not null references refresh_families (id) on delete cascade,
  org_id uuid not null,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  used_at timestamptz
);
create index refresh_tokens_family_idx on refresh_tokens (family_id, expires_at);
select core.enable_tenant_rls('refresh_tokens');

-- Failed logins by account, keyed by a hash of the lower-cased email whether or not the
-- account exists, so lockout behaves the same for unknown emails and reveals nothing.
create table login_attempts (
  email_key text primary key,
  failures integer not null,
  window_started_at timestamptz not null,
  locked_until timestamptz
);
create index login_attempts_window_idx on login_attempts (window_started_at);
revoke all on login_attempts from trellis_app;
