import { SqlClient } from "@effect/sql"
import { Effect, Metric, Option, Redacted } from "effect"
import { recordAudit } from "../../core/Audit.ts"
import { CurrentActor } from "../../core/Auth.ts"
import { Forbidden, Unauthorized } from "../../core/Errors.ts"
import { Options, type TokenResponse } from "./Domain.ts"
import { hashPassword, makeDummyHash, verifyPassword } from "./Passwords.ts"
import { PlatformRepo, type RefreshSession } from "./Repo.ts"
import { hashSecret, newOpaqueSecret, Tokens } from "./Tokens.ts"

export const loginFailuresTotal = Metric.counter("identity_login_failures_total", {
  description: "Refused logins by reason (invalid_credentials, locked)",
  incremental: true
})

const INVALID_CREDENTIALS = "invalid email or password"
const INVALID_REFRESH = "invalid, expired or revoked refresh token"

/** Login, refresh and logout: platform work, since the organisation is not known yet. */
export class Sessions extends Effect.Service<Sessions>()("identity/Sessions", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* PlatformRepo
    const tokens = yield* Tokens
    const options = yield* Options
    const dummyHash = yield* makeDummyHash

    /** A new refresh token in `familyId` and an access token for the membership. */
    const issue = (session: RefreshSession, role: string) =>
      Effect.gen(function* () {
        const refreshToken = newOpaqueSecret()
        yield* repo.insertRefreshToken(hashSecret(refreshToken), session.familyId, session.orgId, options.refreshTokenTtlDays)
        const accessToken = yield* tokens.issueAccessToken({ userId: session.userId, orgId: session.orgId, roles: [role] })
        return { accessToken, tokenType: "Bearer", expiresIn: tokens.accessTokenTtlSeconds, refreshToken } satisfies TokenResponse
      })

    const refused = (reason: "invalid_credentials" | "locked") =>
      Metric.increment(Metric.tagged(loginFailuresTotal, "reason", reason))

    /**
     * Unknown emails and wrong passwords get the same answer after the same scrypt work, and
     * lockout counts attempts per email whether or not the account exists, so no answer
     * tells whether an email is registered.
     */
    const login = (request: { readonly email: string; readonly password: Redacted.Redacted<string>; readonly org?: string | undefined }) =>
      Effect.gen(function* () {
        const emailKey = tokens.emailKey(request.email)
        const anonymous = { kind: "anonymous", id: `email:${emailKey.slice(0, 16)}` }
        const attempt = yield* repo.recordAttempt(emailKey, options.lockoutThreshold, options.lockoutMinutes)
        if (attempt._tag === "Locked") {
          yield* refused("locked")
          yield* recordAudit({ action: "identity.login_failed", actor: anonymous, details: { reason: "locked" } })
          return yield* new Unauthorized({ message: `account locked, retry in ${attempt.retryInSeconds} s` })
        }
        const candidate = yield* repo.loginCandidate(request.email, request.org)
        const stored = Option.match(candidate, { onNone: () => dummyHash, onSome: (c) => c.passwordHash })
        const matches = yield* verifyPassword(request.password, stored)
        if (!matches || Option.isNone(candidate)) {
          yield* refused("invalid_credentials")
          const target = Option.match(candidate, {
            onNone: () => ({}),
            onSome: (c) => ({ targetType: "user", targetId: c.userId, ...(c.orgId ? { orgId: c.orgId } : {}) })
          })
          yield* recordAudit({ action: "identity.login_failed", actor: anonymous, details: { reason: "invalid_credentials" }, ...target })
          if (attempt.lockedNow) {
            yield* recordAudit({
              action: "identity.lockout",
              actor: anonymous,
              details: { threshold: options.lockoutThreshold, minutes: options.lockoutMinutes },
              ...target
            })
          }
          return yield* new Unauthorized({ message: INVALID_CREDENTIALS })
        }
        yield* repo.clearAttempts(emailKey)
        const { userId, orgId, role } = candidate.value
        if (orgId === null || role === null) {
          return yield* new Forbidden({
            message: request.org ? `not a member of organisation ${request.org}` : "this user belongs to no organisation"
          })
        }
        return yield* sql.withTransaction(
          Effect.gen(function* () {
            const familyId = yield* repo.startFamily(orgId, userId)
            const response = yield* issue({ familyId, orgId, userId }, role)
            yield* recordAudit({
              action: "identity.login",
              actor: { kind: "user", id: userId },
              orgId,
              targetType: "user",
              targetId: userId,
              details: { role }
            })
            return response
          })
        )
      }).pipe(Effect.withSpan("identity.login"))

    /**
     * Rotates a refresh token: the old one is spent and a new one issued in its family, in
     * one transaction. Presenting a spent token again means it leaked (or a client raced
     * itself): the whole family is revoked, so the thief's and the owner's tokens both die.
     */
    const refresh = (refreshToken: Redacted.Redacted<string>) =>
      Effect.gen(function* () {
        const hash = hashSecret(Redacted.value(refreshToken))
        const rotated = yield* sql.withTransaction(
          Effect.gen(function* () {
            const spent = yield* repo.spend(hash)
            if (Option.isNone(spent)) return Option.none()
            const session = spent.value
            const role = yield* repo.membershipRole(session.orgId, session.userId)
            if (Option.isNone(role)) {
              yield* repo.revokeFamily(session.familyId)
              return Option.none()
            }
            return Option.some(yield* issue(session, role.value))
          })
        )
        if (Option.isSome(rotated)) return rotated.value
        const why = yield* repo.whySpent(hash)
        if (why._tag === "Reused" && (yield* repo.revokeFamily(why.session.familyId))) {
          yield* Effect.logWarning("refresh token reused; revoked its family").pipe(
            Effect.annotateLogs({ familyId: why.session.familyId, userId: why.session.userId })
          )
          yield* recordAudit({
            action: "identity.refresh_reuse",
            actor: { kind: "anonymous", id: "unknown" },
            orgId: why.session.orgId,
            targetType: "refresh_family",
            targetId: why.session.familyId,
            details: { userId: why.session.userId }
          })
        }
        return yield* new Unauthorized({ message: INVALID_REFRESH })
      }).pipe(Effect.withSpan("identity.refresh"))

    /** Revokes the session the token belongs to; unknown or revoked tokens are no error. */
    const logout = (refreshToken: Redacted.Redacted<string>) =>
      Effect.gen(function* () {
        const revoked = yield* repo.revokeFamilyOf(hashSecret(Redacted.value(refreshToken)))
        if (Option.isSome(revoked)) {
          yield* recordAudit({
            action: "identity.logout",
            actor: { kind: "user", id: revoked.value.userId },
            orgId: revoked.value.orgId,
            targetType: "refresh_family",
            targetId: revoked.value.familyId
          })
        }
      }).pipe(Effect.withSpan("identity.logout"))

    /**
     * A user changes their own password: the current one must match; every session (refresh
     * token family) of the user is revoked, so stolen refresh tokens die with the old password.
     * Access tokens already issued live out their short lifetime.
     */
    const changePassword = (request: { readonly currentPassword: Redacted.Redacted<string>; readonly newPassword: Redacted.Redacted<string> }) =>
      Effect.gen(function* () {
        const actor = yield* CurrentActor
        if (actor.kind !== "user") {
          return yield* new Forbidden({ message: "only a signed-in user changes their password (not an API key or the operator)", permission: "user" })
        }
        const stored = yield* repo.passwordHash(actor.id)
        if (Option.isNone(stored) || !(yield* verifyPassword(request.currentPassword, stored.value))) {
          yield* recordAudit({ action: "identity.password_change_failed", targetType: "user", targetId: actor.id })
          return yield* new Forbidden({ message: "the current password is not correct", permission: "user" })
        }
        const hash = yield* hashPassword(request.newPassword)
        yield* sql.withTransaction(
          Effect.gen(function* () {
            yield* repo.setPassword(actor.id, hash)
            const sessions = yield* repo.revokeFamiliesOfUser(actor.id)
            yield* recordAudit({ action: "identity.password_changed", targetType: "user", targetId: actor.id, details: { sessionsRevoked: sessions } })
          })
        )
      }).pipe(Effect.withSpan("identity.changePassword"))

    return { login, refresh, logout, changePassword } as const
  })
}) {}
