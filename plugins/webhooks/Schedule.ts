import { Duration, Option } from "effect"

/**
 * When to try a failed delivery again: Svix's schedule. Attempt 1 goes out at once, and
 * these are the waits after attempts 1..7, so a message gets 8 attempts over about 27.5 hours.
 */
export const defaultDelays: ReadonlyArray<Duration.DurationInput> = [
  "5 seconds",
  "5 minutes",
  "30 minutes",
  "2 hours",
  "5 hours",
  "10 hours",
  "10 hours"
]

export interface RetryScheduleOptions {
  readonly delays?: ReadonlyArray<Duration.DurationInput>
  /** Each delay varies by up to this fraction either way, so failed endpoints are not retried in lockstep. Default 0.2. */
  readonly jitter?: number
  /** Uniform in [0, 1); injectable so tests can pin the jitter. */
  readonly random?: () => number
  /** From the failed attempt's `Retry-After`: the receiver's own wait, honoured when longer. */
  readonly retryAfterSeconds?: number
  /** A receiver cannot park a message beyond this. Default 24 hours. */
  readonly maxRetryAfter?: Duration.DurationInput
}

/**
 * The time of the next attempt after attempt `failedAttempt` (1-based) failed at `now`,
 * or None when that was the last attempt.
 */
export const nextAttemptAt = (failedAttempt: number, now: Date, options: RetryScheduleOptions = {}): Option.Option<Date> => {
  if (!Number.isInteger(failedAttempt) || failedAttempt < 1) throw new RangeError(`attempt numbers start at 1, got ${failedAttempt}`)
  const delays = options.delays ?? defaultDelays
  const delay = delays[failedAttempt - 1]
  if (delay === undefined) return Option.none()
  const jitter = options.jitter ?? 0.2
  const random = options.random ?? Math.random
  const scheduledMs = Duration.toMillis(delay) * (1 + jitter * (2 * random() - 1))
  const retryAfterMs = Math.min((options.retryAfterSeconds ?? 0) * 1000, Duration.toMillis(options.maxRetryAfter ?? "24 hours"))
  return Option.some(new Date(now.getTime() + Math.round(Math.max(scheduledMs, retryAfterMs))))
}
