-- Webhook endpoints of organisations, the messages fanned out to them (one per event and
-- endpoint) and every delivery attempt. All three are tenant tables.

create table endpoints (
  id text primary key default ('ep_' || replace(gen_random_uuid()::text, '-', '')),
  -- The list order and cursor: ids are random.
  seq bigint generated always as identity unique,
  org_id uuid not null,
  url text not null,
  description text not null default '',
  -- Exact types, `prefix.*` or `*`; null subscribes to every event type.
  event_types text[],
  enabled boolean not null default true,
  disabled_reason text check (disabled_reason in ('manual', 'gone', 'failing')),
  headers jsonb not null default '{}',
  -- Messages per second, across every worker.
  rate_limit integer check (rate_limit > 0),
  -- Signing needs the secret itself, so it is stored as is (never logged nor audited).
  secret text not null,
  previous_secret text,
  previous_secret_expires_at timestamptz,
  -- Since when every attempt has failed; reset by a success.
  failing_since timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (enabled = (disabled_reason is null))
);
create index endpoints_org_seq_idx on endpoints (org_id, seq);
create index endpoints_org_enabled_idx on endpoints (org_id) where enabled;
select core.enable_tenant_rls('endpoints');

create table messages (
  -- Sent as `webhook-id`: stable across retries, the receiver's idempotency key.
  id text primary key default ('msg_' || replace(gen_random_uuid()::text, '-', '')),
  seq bigint generated always as identity unique,
  org_id uuid not null,
  endpoint_id text not null references endpoints (id) on delete cascade,
  event_id uuid not null,
  event_type text not null,
  -- The exact bytes sent: re-serialising JSON could change them between attempts.
  body text not null,
  status text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
  attempts integer not null default 0,
  -- The number the next scheduled attempt's job carries; a job with another one is stale.
  next_scheduled_attempt integer not null default 1,
  next_attempt_at timestamptz,
  last_attempt_at timestamptz,
  created_at timestamptz not null default now(),
  -- A fan-out job that runs twice creates no second message.
  unique (endpoint_id, event_id)
);
create index messages_org_seq_idx on messages (org_id, seq desc);
create index messages_org_endpoint_seq_idx on messages (org_id, endpoint_id, seq desc);
create index messages_org_type_seq_idx on messages (org_id, event_type, seq desc);
create index messages_org_status_seq_idx on messages (org_id, status, seq desc);
create index messages_endpoint_failed_idx on messages (endpoint_id, created_at) where status = 'failed';
select core.enable_tenant_rls('messages');

create table attempts (
  id bigint generated always as identity primary key,
  org_id uuid not null,
  message_id text not null references messages (id) on delete cascade,
  trigger text not null check (trigger in ('scheduled', 'manual')),
  attempted_at timestamptz not null,
  status_code integer,
  duration_ms integer not null,
  response_body text,
  error text,
  succeeded boolean not null
);
create index attempts_message_idx on attempts (message_id, id desc);
select core.enable_tenant_rls('attempts');
