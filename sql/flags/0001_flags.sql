-- Feature flags of each organisation. A flag's per-environment configuration and its variants
-- are stored as the evaluation engine reads them (jsonb), validated by the API before every
-- write, so a definition loads in one row with no joins.
create table flags (
  org_id uuid not null,
  key text not null check (key ~ '^[a-z0-9._-]{1,100}$'),
  type text not null check (type in ('release', 'experiment', 'operational', 'kill-switch', 'permission')),
  description text not null default '',
  enabled boolean not null,
  tags text[] not null default '{}',
  -- { "<environment>": { "enabled": bool, "strategies": [...] } }
  environments jsonb not null default '{}',
  variants jsonb not null default '[]',
  archived_at timestamptz,
  -- When flags.stale reported the flag as past its type's expected lifetime (once per flag).
  stale_at timestamptz,
  created_by text not null,
  created_at timestamptz not null default now(),
  updated_by text not null,
  updated_at timestamptz not null default now(),
  primary key (org_id, key)
);
-- The admin list filters by archived state and type and sorts by key; tags filter with @>.
create index flags_org_archived_key_idx on flags (org_id, (archived_at is not null), key);
create index flags_org_type_key_idx on flags (org_id, type, key);
create index flags_tags_idx on flags using gin (tags);
-- The daily stale scan looks across organisations at flags not yet reported.
create index flags_stale_scan_idx on flags (type, created_at) where archived_at is null and stale_at is null;
select core.enable_tenant_rls('flags');

-- The environments an organisation evaluates flags in (a small set, seeded from the plugin's
-- options on the organisation's first flag write).
create table environments (
  org_id uuid not null,
  name text not null check (name ~ '^[a-z0-9_-]{1,50}$'),
  created_at timestamptz not null default now(),
  primary key (org_id, name)
);
select core.enable_tenant_rls('environments');
