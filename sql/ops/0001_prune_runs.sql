-- One row per run of ops.prune: what the retention removed, for operators to audit.
create table prune_runs (
  id bigserial primary key,
  retention_days integer not null,
  dead_letters_deleted integer not null,
  outbox_events_deleted integer not null,
  ran_at timestamptz not null default now()
);
create index prune_runs_ran_at_idx on prune_runs (ran_at desc);
