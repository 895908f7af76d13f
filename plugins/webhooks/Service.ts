import { DateTime, Effect, Option } from "effect"
import { recordAudit } from "../../core/Audit.ts"
import { BadRequest, Conflict, NotFound } from "../../core/Errors.ts"
import { countEnqueued, deliveryJobs } from "./Dispatch.ts"
import {
  type CreateEndpoint,
  type Endpoint,
  type ListMessagesParams,
  type PageParams,
  type Recover,
  type UpdateEndpoint,
  WebhooksSettings
} from "./Domain.ts"
import { EndpointsRepo } from "./EndpointsRepo.ts"
import { MessagesRepo } from "./MessagesRepo.ts"
import { generateSecret } from "./Signature.ts"
import { checkUrlToSave } from "./Ssrf.ts"

const endpointNotFound = (id: string) => new NotFound({ message: `webhook endpoint ${id} not found`, resource: "webhook_endpoint", id })
const messageNotFound = (id: string) => new NotFound({ message: `webhook message ${id} not found`, resource: "webhook_message", id })

const orFail = <A, E>(error: E) => Effect.flatMap((found: Option.Option<A>) => Option.match(found, { onNone: () => Effect.fail(error), onSome: Effect.succeed }))

/** What the audit log keeps of an endpoint: never the secret, and only the names of custom headers (they may carry credentials). */
const auditDetails = (endpoint: Endpoint) => ({
  url: endpoint.url,
  eventTypes: endpoint.eventTypes,
  enabled: endpoint.enabled,
  headerNames: Object.keys(endpoint.headers),
  rateLimit: endpoint.rateLimit
})

/**
 * The org's endpoints and messages. Every method expects to run in the org's tenant
 * transaction (`withTenant`), so audit entries and queued jobs commit with the change.
 */
export class WebhooksService extends Effect.Service<WebhooksService>()("webhooks/WebhooksService", {
  effect: Effect.gen(function* () {
    const settings = yield* WebhooksSettings
    const endpoints = yield* EndpointsRepo
    const messages = yield* MessagesRepo

    /** Literal addresses are judged now; names are resolved and judged at every send. */
    const checkUrl = (url: string) =>
      checkUrlToSave(url, settings).pipe(Effect.mapError((error) => new BadRequest({ message: `url: ${error.message}`, field: "url" })))

    const create = (input: CreateEndpoint) =>
      Effect.gen(function* () {
        yield* checkUrl(input.url)
        const secret = generateSecret()
        const endpoint = yield* endpoints.insert(input, secret)
        yield* recordAudit({
          action: "webhooks.create_endpoint",
          targetType: "webhook_endpoint",
          targetId: endpoint.id,
          details: auditDetails(endpoint)
        })
        return { ...endpoint, secret }
      })

    const get = (id: string) => endpoints.get(id).pipe(orFail(endpointNotFound(id)))

    const update = (id: string, patch: UpdateEndpoint) =>
      Effect.gen(function* () {
        if (patch.url !== undefined) yield* checkUrl(patch.url)
        const endpoint = yield* endpoints.update(id, patch).pipe(orFail(endpointNotFound(id)))
        yield* recordAudit({
          action: "webhooks.update_endpoint",
          targetType: "webhook_endpoint",
          targetId: id,
          details: { changed: Object.keys(patch), ...auditDetails(endpoint) }
        })
        return endpoint
      })

    const remove = (id: string) =>
      Effect.gen(function* () {
        if (!(yield* endpoints.remove(id))) return yield* endpointNotFound(id)
        yield* recordAudit({ action: "webhooks.delete_endpoint", targetType: "webhook_endpoint", targetId: id })
      })

    const secret = (id: string) => endpoints.secret(id).pipe(orFail(endpointNotFound(id)))

    const rotateSecret = (id: string) =>
      Effect.gen(function* () {
        const rotated = yield* endpoints.rotate(id, generateSecret(), settings.secretOverlap).pipe(orFail(endpointNotFound(id)))
        yield* recordAudit({
          action: "webhooks.rotate_secret",
          targetType: "webhook_endpoint",
          targetId: id,
          details: { previousSecretExpiresAt: rotated.previousSecretExpiresAt === null ? null : DateTime.formatIso(rotated.previousSecretExpiresAt) }
        })
        return rotated
      })

    const enabledEndpoint = (id: string) =>
      Effect.gen(function* () {
        const endpoint = yield* get(id)
        if (!endpoint.enabled) {
          return yield* new Conflict({ message: `webhook endpoint ${id} is disabled (${endpoint.disabledReason}); enable it first` })
        }
        return endpoint
      })

    /** Sends every failed message of the endpoint created in the period again, once each. */
    const recover = (id: string, period: Recover) =>
      Effect.gen(function* () {
        yield* enabledEndpoint(id)
        const count = yield* messages.recover(
          {
            endpointId: id,
            since: DateTime.toDateUtc(period.since),
            until: period.until === undefined ? null : DateTime.toDateUtc(period.until)
          },
          yield* deliveryJobs
        )
        yield* countEnqueued(count)
        yield* recordAudit({
          action: "webhooks.recover",
          targetType: "webhook_endpoint",
          targetId: id,
          details: { since: DateTime.formatIso(period.since), until: period.until === undefined ? null : DateTime.formatIso(period.until), count }
        })
        return { count }
      })

    const getMessage = (id: string) => messages.get(id).pipe(orFail(messageNotFound(id)))

    const attempts = (messageId: string, params: PageParams) =>
      Effect.zipRight(getMessage(messageId), messages.attempts(messageId, params))

    /** One more attempt of the message, outside its schedule. */
    const resend = (messageId: string) =>
      Effect.gen(function* () {
        const message = yield* getMessage(messageId)
        yield* enabledEndpoint(message.endpointId)
        yield* messages.markForResend(messageId, yield* deliveryJobs)
        yield* countEnqueued(1)
        return { messageId }
      })

    return {
      create,
      list: endpoints.list,
      get,
      update,
      remove,
      secret,
      rotateSecret,
      recover,
      listMessages: (params: ListMessagesParams) => messages.list(params),
      getMessage,
      attempts,
      resend
    } as const
  })
}) {}
