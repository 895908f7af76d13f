import { HttpApiBuilder, HttpApp, HttpServerResponse } from "@effect/platform"
import { SqlError } from "@effect/sql/SqlError"
import { Effect, Layer } from "effect"
import { requirePermission } from "../../core/Auth.ts"
import { clientAddress, enforceRateLimit } from "../../core/RateLimit.ts"
import { Admin } from "./Admin.ts"
import { IdentityApi } from "./Api.ts"
import { Options } from "./Domain.ts"
import { Sessions } from "./Sessions.ts"

/** A database failure is a 500 (logged by the runtime without its cause reaching the client). */
const dieOnSqlError = <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>) =>
  Effect.catchIf(effect, (error): error is SqlError => error instanceof SqlError, Effect.die)

/** Token responses must not be cached by browsers or proxies (RFC 6749 section 5.1). */
const noStore = HttpApp.appendPreResponseHandler((_request, response) =>
  Effect.succeed(HttpServerResponse.setHeaders(response, { "cache-control": "no-store", pragma: "no-cache" }))
)

const SessionHttp = HttpApiBuilder.group(IdentityApi, "session", (handlers) =>
  Effect.gen(function* () {
    const sessions = yield* Sessions
    const options = yield* Options
    return handlers
      .handle("login", ({ payload }) =>
        Effect.gen(function* () {
          const address = yield* clientAddress
          yield* enforceRateLimit(`login:${address}`, options.loginRateLimit)
          yield* noStore
          return yield* sessions.login(payload)
        }).pipe(dieOnSqlError)
      )
      .handle("refresh", ({ payload }) => noStore.pipe(Effect.zipRight(sessions.refresh(payload.refreshToken)), dieOnSqlError))
      .handle("logout", ({ payload }) => dieOnSqlError(sessions.logout(payload.refreshToken)))
  })
)

const IdentityHttp = HttpApiBuilder.group(IdentityApi, "identity", (handlers) =>
  Effect.gen(function* () {
    const admin = yield* Admin
    const sessions = yield* Sessions
    const guarded = <A, E, R>(permission: string, effect: Effect.Effect<A, E | SqlError, R>) =>
      dieOnSqlError(Effect.zipRight(requirePermission(permission), effect))
    return handlers
      .handle("me", () => dieOnSqlError(admin.me))
      .handle("changePassword", ({ payload }) => dieOnSqlError(sessions.changePassword(payload)))
      .handle("members", () => guarded("identity:read", admin.members))
      .handle("createOrg", ({ payload }) => dieOnSqlError(admin.createOrg(payload)))
      .handle("addUser", ({ payload }) => guarded("identity:admin", admin.addUser(payload)))
      .handle("changeRole", ({ path, payload }) => guarded("identity:admin", admin.changeRole(path.userId, payload.role)))
      .handle("removeMember", ({ path }) => guarded("identity:admin", admin.removeMember(path.userId)))
      .handle("createApiKey", ({ payload }) => guarded("identity:admin", admin.createApiKey(payload)))
      .handle("apiKeys", () => guarded("identity:admin", admin.apiKeys))
      .handle("revokeApiKey", ({ path }) => guarded("identity:admin", admin.revokeApiKey(path.id)))
      .handle("audit", ({ urlParams }) => guarded("identity:admin", admin.audit(urlParams)))
  })
)

export const IdentityHttpLive = Layer.mergeAll(SessionHttp, IdentityHttp)
