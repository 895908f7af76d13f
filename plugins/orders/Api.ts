import { HttpApi, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { Authentication, permissionAnnotation } from "../../core/Auth.ts"
import { BadRequest, Forbidden, NotFound, ServiceUnavailable } from "../../core/Errors.ts"
import { InsufficientStock, UnknownSku } from "../../core/Stock.ts"
import {
  ChangeStatus,
  ChannelState,
  CreateOrder,
  DuplicateOrder,
  IllegalTransition,
  ListOrdersParams,
  Order,
  OrderIdPath,
  OrderPage
} from "./Domain.ts"

const read = permissionAnnotation("orders:read")
const write = permissionAnnotation("orders:write")

export class OrdersGroup extends HttpApiGroup.make("orders")
  .add(
    HttpApiEndpoint.post("create", "/")
      .setPayload(CreateOrder)
      .addSuccess(Order, { status: 201 })
      .addError(BadRequest)
      .addError(DuplicateOrder)
      .addError(UnknownSku)
      .addError(InsufficientStock)
      .addError(ServiceUnavailable)
      .annotate(
        OpenApi.Summary,
        "Place an order: totals computed from the items, stock reserved for every line or the order refused (permission orders:write)"
      )
      .annotateContext(write)
  )
  .add(
    HttpApiEndpoint.get("list", "/")
      .setUrlParams(ListOrdersParams)
      .addSuccess(OrderPage)
      .addError(BadRequest)
      .annotate(OpenApi.Summary, "List orders: channel, status, date and text filters, sorts, cursor pages (permission orders:read)")
      .annotateContext(read)
  )
  .add(
    HttpApiEndpoint.get("channels", "/channels")
      .addSuccess(Schema.Array(ChannelState))
      .annotate(OpenApi.Summary, "Import state of the org's sales channels (permission orders:read)")
      .annotateContext(read)
  )
  .add(
    HttpApiEndpoint.get("get", "/:id")
      .setPath(OrderIdPath)
      .addSuccess(Order)
      .addError(NotFound)
      .annotate(OpenApi.Summary, "One order with its items and status history (permission orders:read)")
      .annotateContext(read)
  )
  .add(
    HttpApiEndpoint.post("changeStatus", "/:id/status")
      .setPath(OrderIdPath)
      .setPayload(ChangeStatus)
      .addSuccess(Order)
      .addError(NotFound)
      .addError(IllegalTransition)
      .annotate(
        OpenApi.Summary,
        "Move an order along PLACED -> CONFIRMED -> SHIPPED -> DELIVERED, or cancel it before shipping (permission orders:write)"
      )
      .annotateContext(write)
  )
  .addError(Forbidden)
  .middleware(Authentication)
  .prefix("/api/v1/orders") {}

export class OrdersApi extends HttpApi.make("orders").add(OrdersGroup) {}
