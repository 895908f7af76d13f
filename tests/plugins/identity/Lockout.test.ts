import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { call, identityPlugin, login, OWNER_EMAIL, OWNER_PASSWORD, startApp } from "./helpers.ts"

const failures = (metrics: string, reason: string) =>
  Number(new RegExp(`^identity_login_failures_total\\{reason="${reason}"\\} (\\d+)`, "m").exec(metrics)?.[1] ?? 0)

describe("identity lockout and login rate limit", () => {
  it.scopedLive("5 failures lock the account (the right password is refused) until the lock expires", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const before = (yield* call(base, "GET", "/metrics")).text
      for (let i = 1; i <= 5; i++) {
        const wrong = yield* login(base, OWNER_EMAIL, `wrong-password-${i}`)
        expect(wrong.status).toBe(401)
        expect(wrong.json.message).toBe("invalid email or password")
      }
      const locked = yield* login(base, OWNER_EMAIL, OWNER_PASSWORD)
      expect(locked.status).toBe(401)
      expect(locked.json.message).toMatch(/^account locked, retry in \d+ s$/)
      const seconds = Number(/retry in (\d+) s/.exec(locked.json.message)![1])
      expect(seconds).toBeGreaterThan(14 * 60)
      expect(seconds).toBeLessThanOrEqual(15 * 60)

      const after = (yield* call(base, "GET", "/metrics")).text
      expect(failures(after, "invalid_credentials") - failures(before, "invalid_credentials")).toBe(5)
      expect(failures(after, "locked") - failures(before, "locked")).toBe(1)
      const audit = yield* sql<{ action: string }>`
        select action from core.audit_log where action in ('identity.login_failed', 'identity.lockout') order by id`
      expect(audit.filter((a) => a.action === "identity.lockout")).toHaveLength(1)
      expect(audit.filter((a) => a.action === "identity.login_failed")).toHaveLength(6)
      const leaked = yield* sql<{ n: number }>`
        select count(*)::int as n from core.audit_log where details::text like '%wrong-password%' or actor_id like '%owner@%'`
      expect(leaked[0]!.n).toBe(0)

      // The lock's end, moved into the past: the next login with the right password works again.
      yield* sql`update identity.login_attempts set locked_until = now() - interval '1 second'`
      const unlocked = yield* login(base, OWNER_EMAIL, OWNER_PASSWORD)
      expect(unlocked.status).toBe(200)
      const counters = yield* sql<{ n: number }>`select count(*)::int as n from identity.login_attempts`
      expect(counters[0]!.n).toBe(0)
    })
  )

  it.scopedLive("a success resets the count, and failures older than the window start a new one", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp({ identity: identityPlugin({ lockoutThreshold: 3, lockoutMinutes: 1 }) })
      for (let i = 0; i < 2; i++) expect((yield* login(base, OWNER_EMAIL, "wrong-password")).status).toBe(401)
      expect((yield* login(base, OWNER_EMAIL, OWNER_PASSWORD)).status).toBe(200)
      for (let i = 0; i < 2; i++) expect((yield* login(base, OWNER_EMAIL, "wrong-password")).status).toBe(401)
      yield* sql`update identity.login_attempts set window_started_at = now() - interval '61 seconds'`
      expect((yield* login(base, OWNER_EMAIL, "wrong-password")).status).toBe(401)
      expect((yield* login(base, OWNER_EMAIL, OWNER_PASSWORD)).status).toBe(200)
      expect((yield* sql<{ n: number }>`select count(*)::int as n from identity.login_attempts`)[0]!.n).toBe(0)
    })
  )

  it.scopedLive("an unknown email answers exactly like a wrong password, lockout included", () =>
    Effect.gen(function* () {
      const { base } = yield* startApp()
      const known = yield* login(base, OWNER_EMAIL, "wrong-password")
      const unknown = yield* login(base, "nobody@example.com", "wrong-password")
      expect(unknown.status).toBe(known.status)
      expect(unknown.json).toEqual(known.json)
      for (let i = 0; i < 4; i++) yield* login(base, "nobody@example.com", "wrong-password")
      const locked = yield* login(base, "nobody@example.com", "wrong-password")
      expect(locked.json.message).toMatch(/^account locked/)
    })
  )

  it.scopedLive("concurrent guesses cannot exceed the threshold", () =>
    Effect.gen(function* () {
      const { base, sql } = yield* startApp()
      const results = yield* Effect.all(
        Array.from({ length: 12 }, (_, i) => login(base, OWNER_EMAIL, `guess-${i}-wrong`)),
        { concurrency: "unbounded" }
      )
      expect(results.filter((r) => r.json.message === "invalid email or password")).toHaveLength(5)
      expect(results.filter((r) => String(r.json.message).startsWith("account locked"))).toHaveLength(7)
      const locked = yield* sql<{ locked: boolean }>`select locked_until > now() as locked from identity.login_attempts`
      expect(locked).toEqual([{ locked: true }])
    })
  )

  it.scopedLive("login is rate limited per client address with 429, Retry-After and RateLimit-* headers", () =>
    Effect.gen(function* () {
      const { base } = yield* startApp({ identity: identityPlugin({ loginRateLimit: { limit: 3, windowSeconds: 60 } }) })
      let refreshToken = ""
      for (let i = 0; i < 3; i++) {
        const ok = yield* login(base, OWNER_EMAIL, OWNER_PASSWORD)
        expect(ok.status).toBe(200)
        expect(ok.headers.get("ratelimit-remaining")).toBe(String(2 - i))
        refreshToken = ok.json.refreshToken
      }
      const limited = yield* login(base, OWNER_EMAIL, OWNER_PASSWORD)
      expect(limited.status).toBe(429)
      expect(limited.json._tag).toBe("TooManyRequests")
      expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0)
      expect(limited.headers.get("ratelimit-limit")).toBe("3")
      expect(limited.headers.get("ratelimit-remaining")).toBe("0")
      // Refresh is not behind the login limit: a signed-in client keeps working.
      const refreshed = yield* call(base, "POST", "/api/v1/identity/refresh", { body: { refreshToken } })
      expect(refreshed.status).toBe(200)
    })
  )
})
