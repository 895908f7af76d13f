import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, HashMap, Logger, Option } from "effect"
import { testDatabase } from "../../support/database.ts"
import { otlpReceiver } from "../../support/otlp.ts"
import { call, capturingStdout, login, startApp, tokensOf } from "./helpers.ts"

const show = (value: unknown) => {
  try {
    return typeof value === "string" ? value : JSON.stringify(value)
  } catch {
    return String(value)
  }
}

/** Every log line the app writes, whatever its level, with its annotations and cause. */
const collectingLogger = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ annotations, cause, logLevel, message }) => {
    const notes = HashMap.toEntries(annotations).map(([k, v]) => `${k}=${show(v)}`)
    lines.push(`${logLevel.label} ${show(message)} ${notes.join(" ")} ${Cause.isEmpty(cause) ? "" : Cause.pretty(cause)}`)
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

describe("identity secrets", () => {
  it.scopedLive("passwords, refresh tokens, API key secrets and Authorization values never reach the logs or spans", () =>
    Effect.gen(function* () {
      const receiver = yield* otlpReceiver
      const db = yield* testDatabase()
      const { lines, layer } = collectingLogger()
      const secrets: Array<string> = []
      // Closing this scope stops the app, which flushes its spans to the receiver.
      yield* Effect.scoped(
        Effect.gen(function* () {
      const { result: app, stdout } = yield* capturingStdout(
        startApp({
          db,
          env: { TRELLIS_BOOTSTRAP_EMAIL: "root@example.com" },
          logger: layer,
          config: { logLevel: "Debug", otlpEndpoint: Option.some(receiver.url) }
        })
      )
      const { base } = app
      const ownerPassword = /generated password \(shown once\):\n {2}(\S+)\n/.exec(stdout)![1]!
      secrets.push(ownerPassword)

      const wrongPassword = "a-wrong-password-guess-42"
      secrets.push(wrongPassword)
      expect((yield* login(base, "root@example.com", wrongPassword)).status).toBe(401)
      expect((yield* login(base, "nobody@example.com", wrongPassword)).status).toBe(401)
      const owner = yield* tokensOf(base, "root@example.com", ownerPassword)
      secrets.push(owner.accessToken, owner.refreshToken)

      const refreshed = yield* call(base, "POST", "/api/v1/identity/refresh", { body: { refreshToken: owner.refreshToken } })
      secrets.push(refreshed.json.accessToken, refreshed.json.refreshToken)
      // A replay logs a warning: it must name the session, not the token.
      expect((yield* call(base, "POST", "/api/v1/identity/refresh", { body: { refreshToken: owner.refreshToken } })).status).toBe(401)

      const memberPassword = "member-password-0042"
      secrets.push(memberPassword)
      const added = yield* call(base, "POST", "/api/v1/identity/users", {
        token: owner.accessToken,
        body: { email: "member@example.com", password: memberPassword, role: "staff" }
      })
      expect(added.status).toBe(201)
      const member = yield* tokensOf(base, "member@example.com", memberPassword)
      secrets.push(member.accessToken, member.refreshToken)
      const changedPassword = "member-password-changed-0043"
      secrets.push(changedPassword)
      const wrongCurrent = "member-wrong-current-0044"
      secrets.push(wrongCurrent)
      const change = (currentPassword: string) =>
        call(base, "POST", "/api/v1/identity/password", { token: member.accessToken, body: { currentPassword, newPassword: changedPassword } })
      expect((yield* change(wrongCurrent)).status).toBe(403)
      expect((yield* change(memberPassword)).status).toBe(204)
      yield* call(base, "POST", "/api/v1/identity/logout", { body: { refreshToken: member.refreshToken } })

      const created = yield* call(base, "POST", "/api/v1/identity/api-keys", {
        token: owner.accessToken,
        body: { name: "ci", permissions: ["ops:read"] }
      })
      const apiKey: string = created.json.key
      secrets.push(apiKey, apiKey.split("_").slice(2).join("_"))
      expect((yield* call(base, "GET", "/api/v1/ops/queues", { apiKey })).status).toBe(200)
      expect((yield* call(base, "GET", "/api/v1/ops/queues", { token: apiKey })).status).toBe(200)
      const forged = `${apiKey.slice(0, -4)}AAAA`
      secrets.push(forged)
      expect((yield* call(base, "GET", "/api/v1/ops/queues", { apiKey: forged })).status).toBe(401)
      const rejectedPassword = "rejected-payload-password-7"
      secrets.push(rejectedPassword)
      const badPayload = yield* call(base, "POST", "/api/v1/identity/login", { body: { email: "not an email", password: rejectedPassword } })
      expect(badPayload.status).toBe(400)
      // A rejected secret is not echoed in the 400 either.
      const tooShort = "elevenchars"
      const shortReply = yield* call(base, "POST", "/api/v1/identity/users", {
        token: owner.accessToken,
        body: { email: "short@example.com", password: tooShort, role: "staff" }
      })
      expect(shortReply.json.issues).toContainEqual(expect.objectContaining({ path: ["password"], message: "must be at least 12 characters" }))
      expect(shortReply.text).not.toContain(tooShort)

        })
      )
      expect(lines.some((line) => line.includes("http request"))).toBe(true)
      expect(lines.some((line) => line.includes("refresh token reused"))).toBe(true)
      const logs = lines.join("\n")
      for (const secret of secrets) expect(logs.includes(secret), `a secret of ${secret.length} characters was logged`).toBe(false)
      expect(receiver.spans.some((span) => span.name === "http POST /api/v1/identity/login")).toBe(true)
      const spans = receiver.bodies.join("\n")
      for (const secret of secrets) expect(spans.includes(secret), `a secret of ${secret.length} characters is in a span`).toBe(false)
    })
  )
})
