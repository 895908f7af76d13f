create table runs (
  id bigserial primary key,
  label text not null,
  job_id bigint not null,
  task text not null,
  attempt integer not null,
  tenant text,
  scheduled_for timestamptz,
  started_at timestamptz not null,
  finished_at timestamptz not null default clock_timestamp()
);
