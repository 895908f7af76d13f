import { HttpApi, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { Authentication, permissionAnnotation } from "../../core/Auth.ts"
import { BadRequest, Forbidden, NotFound } from "../../core/Errors.ts"
import { InsufficientStock, UnknownSku } from "../../core/Stock.ts"
import {
  Adjustment,
  AdjustmentLogPage,
  AdjustmentLogParams,
  CreateAdjustment,
  CreateItem,
  CreateLocation,
  CreateReservation,
  Item,
  ItemPage,
  ItemReserved,
  ListItemsParams,
  Location,
  LocationTaken,
  ReferencePath,
  Reservations,
  SkuPath,
  SkuTaken,
  UnknownLocation,
  UpdateItem
} from "./Domain.ts"

const read = permissionAnnotation("inventory:read")
const write = permissionAnnotation("inventory:write")

export class InventoryGroup extends HttpApiGroup.make("inventory")
  .add(
    HttpApiEndpoint.get("listLocations", "/locations")
      .addSuccess(Schema.Array(Location))
      .annotate(OpenApi.Summary, "The org's stock locations (permission inventory:read)")
      .annotateContext(read)
  )
  .add(
    HttpApiEndpoint.post("createLocation", "/locations")
      .setPayload(CreateLocation)
      .addSuccess(Location, { status: 201 })
      .addError(LocationTaken)
      .annotate(OpenApi.Summary, "Add a stock location (permission inventory:write)")
      .annotateContext(write)
  )
  .add(
    HttpApiEndpoint.get("listItems", "/items")
      .setUrlParams(ListItemsParams)
      .addSuccess(ItemPage)
      .addError(BadRequest)
      .annotate(OpenApi.Summary, "List items: text, location and low-stock filters, sorts, cursor pages (permission inventory:read)")
      .annotateContext(read)
  )
  .add(
    HttpApiEndpoint.post("createItem", "/items")
      .setPayload(CreateItem)
      .addSuccess(Item, { status: 201 })
      .addError(SkuTaken)
      .annotate(OpenApi.Summary, "Add an item (permission inventory:write)")
      .annotateContext(write)
  )
  .add(
    HttpApiEndpoint.get("getItem", "/items/:sku")
      .setPath(SkuPath)
      .addSuccess(Item)
      .addError(NotFound)
      .annotate(OpenApi.Summary, "One item with its stock per location, deleted or not (permission inventory:read)")
      .annotateContext(read)
  )
  .add(
    HttpApiEndpoint.patch("updateItem", "/items/:sku")
      .setPath(SkuPath)
      .setPayload(UpdateItem)
      .addSuccess(Item)
      .addError(NotFound)
      .annotate(OpenApi.Summary, "Change an item's name, unit, threshold or attributes (permission inventory:write)")
      .annotateContext(write)
  )
  .add(
    HttpApiEndpoint.del("deleteItem", "/items/:sku")
      .setPath(SkuPath)
      .addSuccess(Schema.Void, { status: 204 })
      .addError(NotFound)
      .addError(ItemReserved)
      .annotate(OpenApi.Summary, "Soft-delete an item without reserved units (permission inventory:write)")
      .annotateContext(write)
  )
  .add(
    HttpApiEndpoint.post("restoreItem", "/items/:sku/restore")
      .setPath(SkuPath)
      .addSuccess(Item)
      .addError(NotFound)
      .annotate(OpenApi.Summary, "Restore a deleted item (permission inventory:write)")
      .annotateContext(write)
  )
  .add(
    HttpApiEndpoint.get("adjustmentLog", "/items/:sku/adjustments")
      .setPath(SkuPath)
      .setUrlParams(AdjustmentLogParams)
      .addSuccess(AdjustmentLogPage)
      .addError(NotFound)
      .annotate(OpenApi.Summary, "The item's stock log, newest first (permission inventory:read)")
      .annotateContext(read)
  )
  .add(
    HttpApiEndpoint.post("adjust", "/adjustments")
      .setPayload(CreateAdjustment)
      .addSuccess(Adjustment, { status: 201 })
      .addError(UnknownSku)
      .addError(UnknownLocation)
      .addError(InsufficientStock)
      .annotate(OpenApi.Summary, "Receive, ship or correct stock; all lines or none (permission inventory:write)")
      .annotateContext(write)
  )
  .add(
    HttpApiEndpoint.post("reserve", "/reservations")
      .setPayload(CreateReservation)
      .addSuccess(Reservations, { status: 201 })
      .addError(UnknownSku)
      .addError(InsufficientStock)
      .annotate(OpenApi.Summary, "Reserve stock for a reference; all lines or none (permission inventory:write)")
      .annotateContext(write)
  )
  .add(
    HttpApiEndpoint.get("reservations", "/reservations/:reference")
      .setPath(ReferencePath)
      .addSuccess(Reservations)
      .annotate(OpenApi.Summary, "A reference's reservations (permission inventory:read)")
      .annotateContext(read)
  )
  .add(
    HttpApiEndpoint.post("release", "/reservations/:reference/release")
      .setPath(ReferencePath)
      .addSuccess(Reservations)
      .annotate(OpenApi.Summary, "Give a reference's reserved units back (permission inventory:write)")
      .annotateContext(write)
  )
  .add(
    HttpApiEndpoint.post("commit", "/reservations/:reference/commit")
      .setPath(ReferencePath)
      .addSuccess(Reservations)
      .annotate(OpenApi.Summary, "Ship a reference's reserved units (permission inventory:write)")
      .annotateContext(write)
  )
  .addError(Forbidden)
  .middleware(Authentication)
  .prefix("/api/v1/inventory") {}

export class InventoryApi extends HttpApi.make("inventory").add(InventoryGroup) {}
