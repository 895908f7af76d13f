import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Either, Layer, Option } from "effect"
import { CurrentActor, hasPermission, requirePermission } from "../../core/Auth.ts"
import { Forbidden } from "../../core/Errors.ts"
import { currentOrgId } from "../../core/Tenancy.ts"
import { FlagsAdmin } from "./Admin.ts"
import { FlagsApi } from "./Api.ts"
import { EnvironmentConfig } from "./Domain.ts"
import { evaluate } from "./Evaluation.ts"
import { CreateFlag, FlagsConfig, FlagsDocument, UpdateFlag } from "./Model.ts"
import { answerOf, contextOf, etagOf, isFailure, notModified } from "./Ofrep.ts"
import { environmentOf, FlagStore, isFlagKey } from "./Store.ts"
import { decodeBody } from "./Validation.ts"

// Bodies are decoded here rather than by HttpApi, so that a 400 names the field and carries
// the Domain Schemas' own messages without the union noise of HttpApi's decode error.
const FlagsHttp = HttpApiBuilder.group(FlagsApi, "flags", (handlers) =>
  Effect.gen(function* () {
    const admin = yield* FlagsAdmin
    const read = requirePermission("flags:read")
    const write = requirePermission("flags:admin")
    return handlers
      .handle("list", ({ urlParams }) => Effect.zipRight(read, admin.list(urlParams)))
      .handleRaw("create", ({ request }) =>
        write.pipe(Effect.zipRight(decodeBody(CreateFlag)(request)), Effect.flatMap(admin.create))
      )
      .handle("export", ({ urlParams }) => Effect.zipRight(read, admin.exportAll(urlParams.includeArchived)))
      .handleRaw("import", ({ request }) =>
        write.pipe(Effect.zipRight(decodeBody(FlagsDocument)(request)), Effect.flatMap(admin.importAll))
      )
      .handle("environments", () => Effect.zipRight(read, admin.environments))
      .handle("addEnvironment", ({ path }) => Effect.zipRight(write, admin.addEnvironment(path.name)))
      .handle("removeEnvironment", ({ path }) => Effect.zipRight(write, admin.removeEnvironment(path.name)))
      .handle("get", ({ path }) => Effect.zipRight(read, admin.get(path.key)))
      .handleRaw("update", ({ path, request }) =>
        write.pipe(
          Effect.zipRight(decodeBody(UpdateFlag)(request)),
          Effect.flatMap((patch) => admin.update(path.key, patch))
        )
      )
      .handleRaw("setEnvironment", ({ path, request }) =>
        write.pipe(
          Effect.zipRight(decodeBody(EnvironmentConfig)(request)),
          Effect.flatMap((config) => admin.setEnvironment(path.key, path.environment, config))
        )
      )
      .handle("archive", ({ path }) => Effect.zipRight(write, admin.setArchived(path.key, true)))
      .handle("restore", ({ path }) => Effect.zipRight(write, admin.setArchived(path.key, false)))
      .handle("delete", ({ path }) => Effect.zipRight(write, admin.remove(path.key)))
      .handle("audit", ({ path, urlParams }) => Effect.zipRight(read, admin.auditTrail(path.key, urlParams)))
  })
)

/** Evaluation keys get `flags:evaluate` alone; anyone who may read the definitions may evaluate them. */
const requireEvaluate = Effect.flatMap(CurrentActor, (actor) =>
  hasPermission(actor, "flags:evaluate") || hasPermission(actor, "flags:read")
    ? Effect.void
    : Effect.fail(new Forbidden({ message: "missing permission flags:evaluate", permission: "flags:evaluate" }))
)

const requireOrg = Effect.flatMap(
  currentOrgId,
  Option.match({
    onNone: () => Effect.fail(new Forbidden({ message: "flag evaluation needs an organisation's API key or a member's token" })),
    onSome: Effect.succeed
  })
)

const json = (status: number, body: unknown) => HttpServerResponse.unsafeJson(body, { status })

// The answers are written as JSON directly: the shapes are the protocol's (Model.ts documents
// them), and encoding them through a Schema on every evaluation would cost the hot path.
const OfrepHttp = HttpApiBuilder.group(FlagsApi, "ofrep", (handlers) =>
  Effect.gen(function* () {
    const store = yield* FlagStore
    const { defaultEnvironment } = yield* FlagsConfig
    return handlers
      .handleRaw("evaluateFlag", ({ path, request }) =>
        Effect.gen(function* () {
          yield* requireEvaluate
          const orgId = yield* requireOrg
          const key = path.key
          const context = contextOf(yield* Effect.orDie(request.text))
          if (Either.isLeft(context)) return json(400, { key, ...context.left })
          const flag = isFlagKey(key) ? yield* Effect.orDie(store.flag(orgId, key)) : null
          if (flag === null) {
            return json(404, { key, errorCode: "FLAG_NOT_FOUND", errorDetails: `flag "${key}" does not exist in this organisation` })
          }
          const environment = environmentOf(context.right, defaultEnvironment)
          const answer = answerOf(flag, environment, evaluate(flag, environment, context.right))
          return json(isFailure(answer) ? 400 : 200, answer)
        })
      )
      .handleRaw("evaluateFlags", ({ request }) =>
        Effect.gen(function* () {
          yield* requireEvaluate
          const orgId = yield* requireOrg
          const context = contextOf(yield* Effect.orDie(request.text))
          if (Either.isLeft(context)) return json(400, context.left)
          const environment = environmentOf(context.right, defaultEnvironment)
          const flags = (yield* Effect.orDie(store.all(orgId))).map((flag) =>
            answerOf(flag, environment, evaluate(flag, environment, context.right))
          )
          const body = JSON.stringify({ flags })
          const etag = etagOf(body)
          return notModified(request.headers["if-none-match"], etag)
            ? HttpServerResponse.empty({ status: 304, headers: { etag } })
            : HttpServerResponse.text(body, { contentType: "application/json", headers: { etag } })
        })
      )
  })
)

export const FlagsHttpLive = Layer.mergeAll(FlagsHttp, OfrepHttp)
