import { describe, expect, it } from "@effect/vitest"
import { type Duration, Option } from "effect"
import { nextAttemptAt } from "../../../plugins/webhooks/Schedule.ts"

const now = new Date("2025-03-01T12:00:00.000Z")
const second = 1000
const minute = 60 * second
const hour = 60 * minute
const svix = [5 * second, 5 * minute, 30 * minute, 2 * hour, 5 * hour, 10 * hour, 10 * hour]

const waitAfter = (failedAttempt: number, options: Parameters<typeof nextAttemptAt>[2]) =>
  Option.map(nextAttemptAt(failedAttempt, now, options), (at) => at.getTime() - now.getTime())

describe("webhook retry schedule", () => {
  it("waits 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h without jitter", () => {
    expect(svix.map((_, i) => waitAfter(i + 1, { jitter: 0 }))).toEqual(svix.map(Option.some))
  })

  it("gives up after the 8th attempt", () => {
    expect(Option.isSome(nextAttemptAt(7, now, { jitter: 0 }))).toBe(true)
    expect(nextAttemptAt(8, now, { jitter: 0 })).toEqual(Option.none())
    expect(nextAttemptAt(9, now)).toEqual(Option.none())
  })

  it("jitters by at most 20% either way", () => {
    expect(svix.map((_, i) => waitAfter(i + 1, { random: () => 0 }))).toEqual(svix.map((ms) => Option.some(Math.round(ms * 0.8))))
    expect(svix.map((_, i) => waitAfter(i + 1, { random: () => 1 }))).toEqual(svix.map((ms) => Option.some(Math.round(ms * 1.2))))
    expect(waitAfter(4, { random: () => 0.5 })).toEqual(Option.some(2 * hour))
    expect(waitAfter(4, { random: () => 0, jitter: 0.5 })).toEqual(Option.some(hour))
  })

  it("takes a configured list of delays", () => {
    const delays: ReadonlyArray<Duration.DurationInput> = ["1 second", "2 minutes"]
    expect(waitAfter(1, { delays, jitter: 0 })).toEqual(Option.some(second))
    expect(waitAfter(2, { delays, jitter: 0 })).toEqual(Option.some(2 * minute))
    expect(waitAfter(3, { delays, jitter: 0 })).toEqual(Option.none())
  })

  it("honours a longer Retry-After, capped at 24 hours", () => {
    expect(waitAfter(1, { jitter: 0, retryAfterSeconds: 3600 })).toEqual(Option.some(hour))
    // The schedule's own wait is longer here, so it stands.
    expect(waitAfter(3, { jitter: 0, retryAfterSeconds: 60 })).toEqual(Option.some(30 * minute))
    // Retry-After wins over the jittered delay too.
    expect(waitAfter(1, { random: () => 1, retryAfterSeconds: 10 })).toEqual(Option.some(10 * second))
    expect(waitAfter(1, { jitter: 0, retryAfterSeconds: 100 * 3600 })).toEqual(Option.some(24 * hour))
    expect(waitAfter(1, { jitter: 0, retryAfterSeconds: 100 * 3600, maxRetryAfter: "1 hour" })).toEqual(Option.some(hour))
    expect(waitAfter(8, { jitter: 0, retryAfterSeconds: 60 })).toEqual(Option.none())
  })

  it("numbers attempts from 1", () => {
    expect(() => nextAttemptAt(0, now)).toThrow(RangeError)
    expect(() => nextAttemptAt(1.5, now)).toThrow(RangeError)
  })
})
