import { HttpApi, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { Authentication, permissionAnnotation } from "../../core/Auth.ts"
import { BadRequest, Conflict, Forbidden, NotFound } from "../../core/Errors.ts"
import {
  AttemptPage,
  CreateEndpoint,
  Endpoint,
  EndpointId,
  EndpointPage,
  EndpointSecret,
  EndpointWithSecret,
  EventTypeList,
  ListMessagesParams,
  MessageId,
  MessagePage,
  MessageWithPayload,
  PageParams,
  Recover,
  Recovered,
  Resent,
  UpdateEndpoint
} from "./Domain.ts"

export const PERMISSION = "webhooks:admin"

const endpointPath = Schema.Struct({ id: EndpointId })
const messagePath = Schema.Struct({ id: MessageId })
const admin = permissionAnnotation(PERMISSION)

export class WebhooksGroup extends HttpApiGroup.make("webhooks")
  .add(
    HttpApiEndpoint.get("listEventTypes", "/event-types")
      .addSuccess(EventTypeList)
      .annotate(OpenApi.Summary, "Event types endpoints can subscribe to, with the JSON Schema of their data")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.get("openApi", "/openapi.json")
      .addSuccess(Schema.Unknown)
      .annotate(OpenApi.Summary, "OpenAPI 3.1 document of the deliveries (top-level `webhooks`, one per event type)")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.post("createEndpoint", "/endpoints")
      .setPayload(CreateEndpoint)
      .addSuccess(EndpointWithSecret, { status: 201 })
      .addError(BadRequest)
      .annotate(OpenApi.Summary, "Create an endpoint; the answer carries its signing secret")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.get("listEndpoints", "/endpoints")
      .setUrlParams(PageParams)
      .addSuccess(EndpointPage)
      .annotate(OpenApi.Summary, "List endpoints, oldest first")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.get("getEndpoint", "/endpoints/:id")
      .setPath(endpointPath)
      .addSuccess(Endpoint)
      .addError(NotFound)
      .annotate(OpenApi.Summary, "One endpoint")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.patch("updateEndpoint", "/endpoints/:id")
      .setPath(endpointPath)
      .setPayload(UpdateEndpoint)
      .addSuccess(Endpoint)
      .addError(NotFound)
      .addError(BadRequest)
      .annotate(OpenApi.Summary, "Change an endpoint; enabling it again clears its failure streak")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.del("deleteEndpoint", "/endpoints/:id")
      .setPath(endpointPath)
      .addSuccess(Schema.Void, { status: 204 })
      .addError(NotFound)
      .annotate(OpenApi.Summary, "Delete an endpoint with its messages and attempts")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.get("getSecret", "/endpoints/:id/secret")
      .setPath(endpointPath)
      .addSuccess(EndpointSecret)
      .addError(NotFound)
      .annotate(OpenApi.Summary, "The endpoint's signing secret")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.post("rotateSecret", "/endpoints/:id/secret/rotate")
      .setPath(endpointPath)
      .addSuccess(EndpointSecret)
      .addError(NotFound)
      .annotate(OpenApi.Summary, "New signing secret, effective at once; the previous one keeps signing for 24 hours")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.post("recover", "/endpoints/:id/recover")
      .setPath(endpointPath)
      .setPayload(Recover)
      .addSuccess(Recovered, { status: 202 })
      .addError(NotFound)
      .addError(Conflict)
      .annotate(OpenApi.Summary, "Send the endpoint's failed messages created since a time again")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.get("listMessages", "/messages")
      .setUrlParams(ListMessagesParams)
      .addSuccess(MessagePage)
      .annotate(OpenApi.Summary, "List messages, newest first, by endpoint, event type, status and creation time")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.get("getMessage", "/messages/:id")
      .setPath(messagePath)
      .addSuccess(MessageWithPayload)
      .addError(NotFound)
      .annotate(OpenApi.Summary, "One message with its payload")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.get("listAttempts", "/messages/:id/attempts")
      .setPath(messagePath)
      .setUrlParams(PageParams)
      .addSuccess(AttemptPage)
      .addError(NotFound)
      .annotate(OpenApi.Summary, "The message's delivery attempts, newest first")
      .annotateContext(admin)
  )
  .add(
    HttpApiEndpoint.post("resend", "/messages/:id/resend")
      .setPath(messagePath)
      .addSuccess(Resent, { status: 202 })
      .addError(NotFound)
      .addError(Conflict)
      .annotate(OpenApi.Summary, "Send the message once more, now")
      .annotateContext(admin)
  )
  .addError(Forbidden)
  .middleware(Authentication)
  .prefix("/api/v1/webhooks") {}

export class WebhooksApi extends HttpApi.make("webhooks").add(WebhooksGroup) {}
