import { Effect } from "effect"

/** Polls `check` until it returns a value other than undefined; fails after `timeoutMs`. */
export const waitFor = <A, E, R>(
  what: string,
  check: Effect.Effect<A | undefined, E, R>,
  timeoutMs = 15_000,
  intervalMs = 50
): Effect.Effect<A, E | Error, R> =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const value = yield* check
      if (value !== undefined) return value
      yield* Effect.sleep(intervalMs)
    }
    return yield* Effect.fail(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
  })
