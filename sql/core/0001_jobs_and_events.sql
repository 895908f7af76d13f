-- Jobs that will not run again by themselves: undecodable payloads, non-retryable failures
-- and jobs whose attempts are exhausted. Operators list, retry or discard them.
create table dead_letters (
  id bigserial primary key,
  job_id bigint not null unique,
  task_identifier text not null,
  queue_name text,
  payload jsonb not null,
  org_id text,
  reason text not null check (reason in ('undecodable', 'exhausted', 'non_retryable')),
  attempts integer not null,
  max_attempts integer not null,
  last_error text not null,
  job_created_at timestamptz not null,
  failed_at timestamptz not null default now()
);
create index dead_letters_failed_at_idx on dead_letters (failed_at);
create index dead_letters_task_id_idx on dead_letters (task_identifier, id desc);
create index dead_letters_reason_id_idx on dead_letters (reason, id desc);

-- Every published event, written in the publisher's transaction.
create table outbox_events (
  id uuid primary key default gen_random_uuid(),
  type text not null,
  payload jsonb not null,
  org_id text,
  traceparent text,
  occurred_at timestamptz not null default now()
);
create index outbox_events_occurred_at_idx on outbox_events (occurred_at);
create index outbox_events_type_occurred_at_idx on outbox_events (type, occurred_at);
