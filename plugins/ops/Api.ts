import { HttpApi, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { Authentication, permissionAnnotation } from "../../core/Auth.ts"
import { Forbidden, NotFound, ServiceUnavailable } from "../../core/Errors.ts"
import {
  Affected,
  DeadLetter,
  DeadLetterId,
  DeadLetterPage,
  DeadLetterSelection,
  ListDeadLettersParams,
  QueueStats,
  Registrations,
  RetriedJob
} from "./Domain.ts"

const idParam = Schema.Struct({ id: DeadLetterId })

export class OpsGroup extends HttpApiGroup.make("ops")
  .add(
    HttpApiEndpoint.get("health", "/health")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
      .annotate(OpenApi.Summary, "Authenticated liveness check (permission ops:read)")
      .annotateContext(permissionAnnotation("ops:read"))
  )
  .add(
    HttpApiEndpoint.get("listDeadLetters", "/dead-letters")
      .setUrlParams(ListDeadLettersParams)
      .addSuccess(DeadLetterPage)
      .annotate(OpenApi.Summary, "List dead-lettered jobs, newest first (permission ops:read)")
      .annotateContext(permissionAnnotation("ops:read"))
  )
  .add(
    HttpApiEndpoint.get("getDeadLetter", "/dead-letters/:id")
      .setPath(idParam)
      .addSuccess(DeadLetter)
      .addError(NotFound)
      .annotate(OpenApi.Summary, "One dead-lettered job (permission ops:read)")
      .annotateContext(permissionAnnotation("ops:read"))
  )
  .add(
    HttpApiEndpoint.post("retryDeadLetter", "/dead-letters/:id/retry")
      .setPath(idParam)
      .addSuccess(RetriedJob)
      .addError(NotFound)
      .annotate(OpenApi.Summary, "Enqueue a dead-lettered job again (permission ops:write)")
      .annotateContext(permissionAnnotation("ops:write"))
  )
  .add(
    HttpApiEndpoint.post("retryDeadLetters", "/dead-letters/retry")
      .setPayload(DeadLetterSelection)
      .addSuccess(Affected)
      .addError(ServiceUnavailable)
      .annotate(OpenApi.Summary, "Enqueue many dead-lettered jobs again, by ids or filter (permission ops:write; kill switch ops.mass-retry)")
      .annotateContext(permissionAnnotation("ops:write"))
  )
  .add(
    HttpApiEndpoint.del("discardDeadLetter", "/dead-letters/:id")
      .setPath(idParam)
      .addSuccess(Schema.Void, { status: 204 })
      .addError(NotFound)
      .annotate(OpenApi.Summary, "Discard a dead-lettered job (permission ops:write)")
      .annotateContext(permissionAnnotation("ops:write"))
  )
  .add(
    HttpApiEndpoint.post("discardDeadLetters", "/dead-letters/discard")
      .setPayload(DeadLetterSelection)
      .addSuccess(Affected)
      .annotate(OpenApi.Summary, "Discard many dead-lettered jobs, by ids or filter (permission ops:write)")
      .annotateContext(permissionAnnotation("ops:write"))
  )
  .add(
    HttpApiEndpoint.get("queues", "/queues")
      .addSuccess(Schema.Array(QueueStats))
      .annotate(OpenApi.Summary, "Queue statistics by task (permission ops:read)")
      .annotateContext(permissionAnnotation("ops:read"))
  )
  .add(
    HttpApiEndpoint.get("registrations", "/tasks")
      .addSuccess(Registrations)
      .annotate(OpenApi.Summary, "Registered tasks and cron items (permission ops:read)")
      .annotateContext(permissionAnnotation("ops:read"))
  )
  .addError(Forbidden)
  .middleware(Authentication)
  .prefix("/api/v1/ops") {}

export class OpsApi extends HttpApi.make("ops").add(OpsGroup) {}
