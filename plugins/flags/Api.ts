import { HttpApi, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { Authentication, permissionAnnotation } from "../../core/Auth.ts"
import { BadRequest, Conflict, Forbidden, NotFound } from "../../core/Errors.ts"
import { EnvironmentConfig } from "./Domain.ts"
import {
  AuditParams,
  CreateFlag,
  Environment,
  EnvironmentNamePath,
  EnvironmentPath,
  ExportParams,
  Flag,
  FlagAuditPage,
  FlagPage,
  FlagsDocument,
  ImportResult,
  KeyPath,
  ListFlagsParams,
  OfrepBulkFailure,
  OfrepBulkResponse,
  OfrepFailure,
  OfrepNotFound,
  OfrepRequest,
  OfrepSuccess,
  UpdateFlag
} from "./Model.ts"

const read = (summary: string) => OpenApi.annotations({ summary: `${summary} (permission flags:read)` })
const admin = (summary: string) => OpenApi.annotations({ summary: `${summary} (permission flags:admin)` })

export class FlagsGroup extends HttpApiGroup.make("flags")
  .add(
    HttpApiEndpoint.get("list", "/")
      .setUrlParams(ListFlagsParams)
      .addSuccess(FlagPage)
      .annotateContext(read("The organisation's flags by key, filtered by type, tag, archived state or text"))
      .annotateContext(permissionAnnotation("flags:read"))
  )
  .add(
    HttpApiEndpoint.post("create", "/")
      .setPayload(CreateFlag)
      .addSuccess(Flag, { status: 201 })
      .addError(BadRequest)
      .addError(Conflict)
      .annotateContext(admin("Create a flag"))
      .annotateContext(permissionAnnotation("flags:admin"))
  )
  .add(
    HttpApiEndpoint.get("export", "/export")
      .setUrlParams(ExportParams)
      .addSuccess(FlagsDocument)
      .annotateContext(read("Every flag definition as one JSON document, for import elsewhere"))
      .annotateContext(permissionAnnotation("flags:read"))
  )
  .add(
    HttpApiEndpoint.post("import", "/import")
      .setPayload(FlagsDocument)
      .addSuccess(ImportResult)
      .addError(BadRequest)
      .annotateContext(admin("Create or replace the document's flags, all or none"))
      .annotateContext(permissionAnnotation("flags:admin"))
  )
  .add(
    HttpApiEndpoint.get("environments", "/environments")
      .addSuccess(Schema.Array(Environment))
      .annotateContext(read("The organisation's environments"))
      .annotateContext(permissionAnnotation("flags:read"))
  )
  .add(
    HttpApiEndpoint.put("addEnvironment", "/environments/:name")
      .setPath(EnvironmentNamePath)
      .addSuccess(Schema.Void, { status: 204 })
      .annotateContext(admin("Add an environment"))
      .annotateContext(permissionAnnotation("flags:admin"))
  )
  .add(
    HttpApiEndpoint.del("removeEnvironment", "/environments/:name")
      .setPath(EnvironmentNamePath)
      .addSuccess(Schema.Void, { status: 204 })
      .addError(NotFound)
      .addError(Conflict)
      .annotateContext(admin("Remove an environment no flag configures"))
      .annotateContext(permissionAnnotation("flags:admin"))
  )
  .add(
    HttpApiEndpoint.get("get", "/:key")
      .setPath(KeyPath)
      .addSuccess(Flag)
      .addError(NotFound)
      .annotateContext(read("One flag"))
      .annotateContext(permissionAnnotation("flags:read"))
  )
  .add(
    HttpApiEndpoint.patch("update", "/:key")
      .setPath(KeyPath)
      .setPayload(UpdateFlag)
      .addSuccess(Flag)
      .addError(BadRequest)
      .addError(NotFound)
      .annotateContext(admin("Change a flag; `environments` replaces only the environments it names"))
      .annotateContext(permissionAnnotation("flags:admin"))
  )
  .add(
    HttpApiEndpoint.put("setEnvironment", "/:key/environments/:environment")
      .setPath(EnvironmentPath)
      .setPayload(EnvironmentConfig)
      .addSuccess(Flag)
      .addError(BadRequest)
      .addError(NotFound)
      .annotateContext(admin("Set a flag's configuration in one environment: enabled and its ordered strategies"))
      .annotateContext(permissionAnnotation("flags:admin"))
  )
  .add(
    HttpApiEndpoint.post("archive", "/:key/archive")
      .setPath(KeyPath)
      .addSuccess(Flag)
      .addError(NotFound)
      .addError(BadRequest)
      .annotateContext(admin("Archive a flag: it stops evaluating (OFREP answers FLAG_NOT_FOUND)"))
      .annotateContext(permissionAnnotation("flags:admin"))
  )
  .add(
    HttpApiEndpoint.post("restore", "/:key/restore")
      .setPath(KeyPath)
      .addSuccess(Flag)
      .addError(NotFound)
      .addError(BadRequest)
      .annotateContext(admin("Restore an archived flag"))
      .annotateContext(permissionAnnotation("flags:admin"))
  )
  .add(
    HttpApiEndpoint.del("delete", "/:key")
      .setPath(KeyPath)
      .addSuccess(Schema.Void, { status: 204 })
      .addError(NotFound)
      .addError(Conflict)
      .annotateContext(admin("Delete an archived flag; its audit trail stays"))
      .annotateContext(permissionAnnotation("flags:admin"))
  )
  .add(
    HttpApiEndpoint.get("audit", "/:key/audit")
      .setPath(KeyPath)
      .setUrlParams(AuditParams)
      .addSuccess(FlagAuditPage)
      .addError(NotFound)
      .annotateContext(read("The flag's changes, newest first: who, when, and the changed fields before and after"))
      .annotateContext(permissionAnnotation("flags:read"))
  )
  .addError(Forbidden)
  .middleware(Authentication)
  .prefix("/api/v1/flags") {}

const evaluate = (summary: string) =>
  OpenApi.annotations({
    summary,
    description: "Requires permission flags:evaluate (or flags:read). The environment is the context's `environment`, else the plugin's default."
  })

/** OFREP's own paths (fixed by the standard, so outside /api/v1). */
export class OfrepGroup extends HttpApiGroup.make("ofrep")
  .add(
    HttpApiEndpoint.post("evaluateFlag", "/ofrep/v1/evaluate/flags/:key")
      .setPath(Schema.Struct({ key: Schema.String }))
      .setPayload(OfrepRequest)
      .addSuccess(OfrepSuccess)
      .addError(OfrepFailure)
      .addError(OfrepNotFound)
      .annotateContext(evaluate("OFREP single flag evaluation"))
      .annotateContext(permissionAnnotation("flags:evaluate"))
  )
  .add(
    HttpApiEndpoint.post("evaluateFlags", "/ofrep/v1/evaluate/flags")
      .setPayload(OfrepRequest)
      .addSuccess(OfrepBulkResponse)
      .addSuccess(Schema.Void, { status: 304 })
      .addError(OfrepBulkFailure)
      .annotateContext(evaluate("OFREP bulk evaluation; answers 304 when If-None-Match holds the ETag of the same answer"))
      .annotateContext(permissionAnnotation("flags:evaluate"))
  )
  .addError(Forbidden)
  .middleware(Authentication) {}

export class FlagsApi extends HttpApi.make("flags").add(FlagsGroup).add(OfrepGroup) {}
