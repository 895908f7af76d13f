import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export interface TaskQueueStats {
  readonly task: string
  /** Due and waiting for a worker. */
  readonly pending: number
  /** Scheduled for later (run_at in the future), retries included. */
  readonly scheduled: number
  readonly running: number
  /** Failed at least once and waiting for a retry. */
  readonly retrying: number
  readonly oldestPendingAgeSeconds: number
}

/**
 * Queue depth per task, read from graphile-worker's tables in one statement. Jobs whose
 * attempts are exhausted never stay there: Trellis moves them to the dead-letter table.
 */
export const queueStats = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{
    task: string
    pending: number
    scheduled: number
    running: number
    retrying: number
    oldest: number | null
  }>`
    select t.identifier as task,
           count(*) filter (where j.locked_at is null and j.run_at <= now())::int as pending,
           count(*) filter (where j.locked_at is null and j.run_at > now())::int as scheduled,
           count(*) filter (where j.locked_at is not null)::int as running,
           count(*) filter (where j.attempts > 0 and j.locked_at is null)::int as retrying,
           extract(epoch from now() - min(j.run_at) filter (where j.locked_at is null and j.run_at <= now()))::float8 as oldest
      from graphile_worker._private_jobs j
      join graphile_worker._private_tasks t on t.id = j.task_id
     where j.locked_at is not null or j.attempts < j.max_attempts
     group by t.identifier
     order by t.identifier`
  return rows.map(
    (r): TaskQueueStats => ({
      task: r.task,
      pending: r.pending,
      scheduled: r.scheduled,
      running: r.running,
      retrying: r.retrying,
      oldestPendingAgeSeconds: r.oldest ?? 0
    })
  )
}).pipe(Effect.withSpan("jobs.queueStats"))
