import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { call, identityPlugin, startApp } from "./helpers.ts"

const login = (base: string, forwardedFor: string) =>
  call(base, "POST", "/api/v1/identity/login", {
    body: { email: "nobody@example.test", password: "wrong-password-123" },
    headers: { "x-forwarded-for": forwardedFor }
  })

describe("client address behind proxies", () => {
  it.scopedLive("behind a trusted proxy the login limit counts each forwarded client; otherwise the socket", () =>
    Effect.gen(function* () {
      const plugin = identityPlugin({ loginRateLimit: { limit: 2, windowSeconds: 60 } })
      const trusted = yield* startApp({ identity: plugin, config: { trustedProxies: ["127.0.0.1/32", "::1"] } })
      const a = yield* Effect.forEach([1, 2, 3], () => login(trusted.base, "198.51.100.1, 203.0.113.7"))
      expect(a.map((r) => r.status)).toEqual([401, 401, 429])
      // Another client behind the same proxy has its own window; the forged first entry is ignored.
      const b = yield* login(trusted.base, "203.0.113.7, 203.0.113.8")
      expect(b.status).toBe(401)

      const direct = yield* startApp({ identity: plugin })
      const spoofed = yield* Effect.forEach(["203.0.113.1", "203.0.113.2", "203.0.113.3"], (ip) => login(direct.base, ip))
      expect(spoofed.map((r) => r.status)).toEqual([401, 401, 429])
    })
  )
})
