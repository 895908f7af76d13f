import { Schema } from "effect"

export const OpsOptions = Schema.Struct({
  /** Dead letters and outbox events older than this many days are deleted by `ops.prune`. */
  retentionDays: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 30 }),
  /** When `ops.prune` runs (cron syntax, UTC). */
  pruneSchedule: Schema.optionalWith(Schema.String, { default: () => "17 3 * * *" })
})
export type OpsOptions = typeof OpsOptions.Type

export const DeadLetterReason = Schema.Literal("undecodable", "exhausted", "non_retryable")

export const DeadLetterId = Schema.NumberFromString.pipe(Schema.int(), Schema.positive(), Schema.brand("DeadLetterId"))
export type DeadLetterId = typeof DeadLetterId.Type

export class DeadLetter extends Schema.Class<DeadLetter>("DeadLetter")({
  id: Schema.Number,
  jobId: Schema.String,
  task: Schema.String,
  queueName: Schema.NullOr(Schema.String),
  payload: Schema.Unknown,
  orgId: Schema.NullOr(Schema.String),
  reason: DeadLetterReason,
  attempts: Schema.Number,
  maxAttempts: Schema.Number,
  lastError: Schema.String,
  jobCreatedAt: Schema.DateTimeUtc,
  failedAt: Schema.DateTimeUtc
}) {}

export const DeadLetterPage = Schema.Struct({
  items: Schema.Array(DeadLetter),
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: Schema.NullOr(Schema.String)
})

export const ListDeadLettersParams = Schema.Struct({
  task: Schema.optional(Schema.String),
  reason: Schema.optional(DeadLetterReason),
  since: Schema.optional(Schema.DateTimeUtc),
  until: Schema.optional(Schema.DateTimeUtc),
  limit: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 500)), {
    default: () => 50
  }),
  cursor: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.positive()))
})
export type ListDeadLettersParams = typeof ListDeadLettersParams.Type

export const DeadLetterFilter = Schema.Struct({
  task: Schema.optional(Schema.String),
  reason: Schema.optional(DeadLetterReason),
  since: Schema.optional(Schema.DateTimeUtc),
  until: Schema.optional(Schema.DateTimeUtc)
})

/**
 * Select dead letters by id, or by filter (`{}` selects all). The two shapes are keyed
 * apart so a malformed id list is a 400, never read as an empty filter.
 */
export const DeadLetterSelection = Schema.Union(
  Schema.Struct({ ids: Schema.Array(Schema.Int.pipe(Schema.positive())).pipe(Schema.minItems(1), Schema.maxItems(1000)) }),
  Schema.Struct({ filter: DeadLetterFilter })
)
export type DeadLetterSelection = typeof DeadLetterSelection.Type

export const Affected = Schema.Struct({ count: Schema.Int })

export const RetriedJob = Schema.Struct({ deadLetterId: Schema.Number, jobId: Schema.String })

export const QueueStats = Schema.Struct({
  task: Schema.String,
  pending: Schema.Int,
  scheduled: Schema.Int,
  running: Schema.Int,
  retrying: Schema.Int,
  oldestPendingAgeSeconds: Schema.Number,
  deadLetters: Schema.Int
})

export const RegisteredTask = Schema.Struct({
  id: Schema.String,
  plugin: Schema.String,
  queue: Schema.NullOr(Schema.String),
  maxAttempts: Schema.NullOr(Schema.Int)
})

export const RegisteredCron = Schema.Struct({
  id: Schema.String,
  plugin: Schema.String,
  schedule: Schema.String,
  task: Schema.String
})

export const Registrations = Schema.Struct({
  tasks: Schema.Array(RegisteredTask),
  cron: Schema.Array(RegisteredCron)
})

export const PruneResult = Schema.Struct({ deadLetters: Schema.Int, outboxEvents: Schema.Int })
