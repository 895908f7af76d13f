import { HttpApiBuilder } from "@effect/platform"
import { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import { requirePermission } from "../../core/Auth.ts"
import { Forbidden } from "../../core/Errors.ts"
import { PluginRegistry } from "../../core/Registry.ts"
import { NoTenant, withTenant } from "../../core/Tenancy.ts"
import { PERMISSION, WebhooksApi } from "./Api.ts"
import { eventTypeList, webhooksOpenApi } from "./Catalog.ts"
import { WebhooksService } from "./Service.ts"

const noOrganisation = new Forbidden({
  message: "webhook endpoints belong to an organisation: call with an organisation's credentials",
  permission: PERMISSION
})

/**
 * Checks the permission, then runs `effect` in the caller's organisation (one transaction);
 * a database failure is a 500.
 */
const asAdmin = <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>) =>
  requirePermission(PERMISSION).pipe(
    Effect.zipRight(withTenant(effect)),
    Effect.catchIf(
      (error): error is NoTenant | SqlError => error instanceof NoTenant || error instanceof SqlError,
      (error) => (error instanceof NoTenant ? Effect.fail(noOrganisation) : Effect.die(error))
    )
  )

export const WebhooksHttp = HttpApiBuilder.group(WebhooksApi, "webhooks", (handlers) =>
  Effect.gen(function* () {
    const service = yield* WebhooksService
    const registry = yield* PluginRegistry
    // The enabled plugins are fixed for the process's life, so both documents are made once.
    const eventTypes = eventTypeList(registry)
    const openApi = webhooksOpenApi(registry)
    return handlers
      .handle("listEventTypes", () => Effect.as(requirePermission(PERMISSION), eventTypes))
      .handle("openApi", () => Effect.as(requirePermission(PERMISSION), openApi))
      .handle("createEndpoint", ({ payload }) => asAdmin(service.create(payload)))
      .handle("listEndpoints", ({ urlParams }) => asAdmin(service.list(urlParams)))
      .handle("getEndpoint", ({ path }) => asAdmin(service.get(path.id)))
      .handle("updateEndpoint", ({ path, payload }) => asAdmin(service.update(path.id, payload)))
      .handle("deleteEndpoint", ({ path }) => asAdmin(service.remove(path.id)))
      .handle("getSecret", ({ path }) => asAdmin(service.secret(path.id)))
      .handle("rotateSecret", ({ path }) => asAdmin(service.rotateSecret(path.id)))
      .handle("recover", ({ path, payload }) => asAdmin(service.recover(path.id, payload)))
      .handle("listMessages", ({ urlParams }) => asAdmin(service.listMessages(urlParams)))
      .handle("getMessage", ({ path }) => asAdmin(service.getMessage(path.id)))
      .handle("listAttempts", ({ path, urlParams }) => asAdmin(service.attempts(path.id, urlParams)))
      .handle("resend", ({ path }) => asAdmin(service.resend(path.id)))
  })
)
