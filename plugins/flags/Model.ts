import { HttpApiSchema } from "@effect/platform"
import { Context, Schema } from "effect"
import { EnvironmentConfig, FlagKey, FlagType, Variant, Variants } from "./Domain.ts"

/**
 * The admin API's and OFREP's request and response shapes. The definition parts (strategies,
 * constraints, variants) are the engine's own Schemas from Domain.ts, so what the API accepts
 * is exactly what the engine can evaluate.
 */

const EnvironmentName = Schema.String.pipe(
  Schema.pattern(/^[a-z0-9_-]{1,50}$/, {
    message: (issue) => `environment name ${JSON.stringify(issue.actual)} must be 1-50 characters of a-z, 0-9, "_" or "-"`
  })
)

export const FlagsOptions = Schema.Struct({
  /** The environment OFREP and FeatureGate evaluate in when the context names none. */
  defaultEnvironment: Schema.optionalWith(EnvironmentName, { default: () => "production" }),
  /** Every organisation's environments until it changes them. */
  environments: Schema.optionalWith(Schema.Array(EnvironmentName).pipe(Schema.minItems(1)), {
    default: () => ["development", "production"]
  }),
  /** How long a cached definition lives before it is read again from the database; a backstop, as changes invalidate it at once. */
  cacheTtlSeconds: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 3600)), { default: () => 60 }),
  /** When `flags.stale` looks for flags past their expected lifetime (cron syntax, UTC). */
  staleSchedule: Schema.optionalWith(Schema.String, { default: () => "0 6 * * *" })
})
export type FlagsOptions = typeof FlagsOptions.Type

/** The plugin's options, for its services. */
export class FlagsConfig extends Context.Tag("flags/FlagsConfig")<FlagsConfig, FlagsOptions>() {}

/** Path words of the admin API that a flag key would shadow. */
const RESERVED_KEYS: ReadonlySet<string> = new Set(["export", "import", "environments"])

const NewFlagKey = FlagKey.pipe(
  Schema.filter((key) => (RESERVED_KEYS.has(key) ? `flag key "${key}" is reserved by the API's own routes` : undefined))
)

const Description = Schema.String.pipe(Schema.maxLength(1000))
const Tag = Schema.String.pipe(
  Schema.pattern(/^[a-z0-9:._-]{1,50}$/, {
    message: (issue) => `tag ${JSON.stringify(issue.actual)} must be 1-50 characters of a-z, 0-9, ":", ".", "_" or "-"`
  })
)
const Tags = Schema.Array(Tag).pipe(Schema.maxItems(50))
const Environments = Schema.Record({ key: EnvironmentName, value: EnvironmentConfig })

const specFields = {
  key: NewFlagKey,
  type: FlagType,
  description: Schema.optionalWith(Description, { default: () => "" }),
  enabled: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  tags: Schema.optionalWith(Tags, { default: () => [] }),
  environments: Schema.optionalWith(Environments, { default: () => ({}) }),
  variants: Schema.optionalWith(Variants, { default: () => [] })
}

export const CreateFlag = Schema.Struct(specFields)
export type CreateFlag = typeof CreateFlag.Type

/** A flag's whole definition: what export writes, import reads, and the audit trail diffs. */
export const FlagSpec = Schema.Struct({
  ...specFields,
  archived: Schema.optionalWith(Schema.Boolean, { default: () => false })
})
export type FlagSpec = typeof FlagSpec.Type

/**
 * Present fields replace the flag's; `environments` replaces only the environments it names,
 * and an environment set to null is removed from the flag.
 */
export const UpdateFlag = Schema.Struct({
  type: Schema.optional(FlagType),
  description: Schema.optional(Description),
  enabled: Schema.optional(Schema.Boolean),
  tags: Schema.optional(Tags),
  environments: Schema.optional(Schema.Record({ key: EnvironmentName, value: Schema.NullOr(EnvironmentConfig) })),
  variants: Schema.optional(Variants)
})
export type UpdateFlag = typeof UpdateFlag.Type

export const Flag = Schema.Struct({
  key: Schema.String,
  type: FlagType,
  description: Schema.String,
  enabled: Schema.Boolean,
  tags: Schema.Array(Schema.String),
  environments: Schema.Record({ key: Schema.String, value: EnvironmentConfig }),
  variants: Schema.Array(Variant),
  archived: Schema.Boolean,
  archivedAt: Schema.NullOr(Schema.DateTimeUtc),
  /** Reported by `flags.stale` as older than its type's expected lifetime. */
  stale: Schema.Boolean,
  createdBy: Schema.String,
  createdAt: Schema.DateTimeUtc,
  updatedBy: Schema.String,
  updatedAt: Schema.DateTimeUtc
})
export type Flag = typeof Flag.Type

export const FlagPage = Schema.Struct({
  items: Schema.Array(Flag),
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: Schema.NullOr(Schema.String)
})

export const ListFlagsParams = Schema.Struct({
  type: Schema.optional(FlagType),
  tag: Schema.optional(Tag),
  archived: Schema.optionalWith(Schema.BooleanFromString, { default: () => false }),
  /** Substring of the key or description, case-insensitive. */
  q: Schema.optional(Schema.String.pipe(Schema.maxLength(100))),
  limit: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 500)), { default: () => 100 }),
  /** The last key of the previous page. */
  cursor: Schema.optional(Schema.String)
})
export type ListFlagsParams = typeof ListFlagsParams.Type

export const KeyPath = Schema.Struct({ key: FlagKey })
export const EnvironmentPath = Schema.Struct({ key: FlagKey, environment: EnvironmentName })
export const EnvironmentNamePath = Schema.Struct({ name: EnvironmentName })

export const Environment = Schema.Struct({ name: Schema.String, createdAt: Schema.DateTimeUtc })

export const AuditParams = Schema.Struct({
  limit: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 200)), { default: () => 50 }),
  cursor: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.positive()))
})
export type AuditParams = typeof AuditParams.Type

const FlagAuditEntry = Schema.Struct({
  id: Schema.Number,
  action: Schema.String,
  actor: Schema.Struct({ kind: Schema.String, id: Schema.String }),
  at: Schema.DateTimeUtc,
  requestId: Schema.NullOr(Schema.String),
  /** The changed fields as they were (null when the flag was created). */
  before: Schema.Unknown,
  /** The changed fields as they became (null when the flag was deleted). */
  after: Schema.Unknown
})

export const FlagAuditPage = Schema.Struct({
  items: Schema.Array(FlagAuditEntry),
  nextCursor: Schema.NullOr(Schema.String)
})

export const ExportParams = Schema.Struct({
  includeArchived: Schema.optionalWith(Schema.BooleanFromString, { default: () => false })
})

export const FlagsDocument = Schema.Struct({
  version: Schema.Literal(1),
  exportedAt: Schema.optional(Schema.String),
  flags: Schema.Array(FlagSpec).pipe(Schema.maxItems(5000))
})
export type FlagsDocument = typeof FlagsDocument.Type

export const ImportResult = Schema.Struct({
  created: Schema.Array(Schema.String),
  updated: Schema.Array(Schema.String),
  unchanged: Schema.Array(Schema.String)
})
export type ImportResult = typeof ImportResult.Type

// OFREP (open-feature/protocol service/openapi.yaml). These Schemas document the routes; the
// handlers write the JSON themselves to avoid encoding every evaluation twice.

export const OfrepRequest = Schema.Struct({
  context: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
})

export const OfrepSuccess = Schema.Struct({
  key: Schema.String,
  value: Schema.Unknown,
  reason: Schema.String,
  variant: Schema.optional(Schema.String),
  metadata: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Union(Schema.String, Schema.Number, Schema.Boolean) }))
})
export type OfrepSuccess = typeof OfrepSuccess.Type

const OfrepErrorCode = Schema.Literal("PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "TYPE_MISMATCH", "GENERAL")

export const OfrepFailure = Schema.Struct({
  key: Schema.String,
  errorCode: OfrepErrorCode,
  errorDetails: Schema.optional(Schema.String)
}).annotations(HttpApiSchema.annotations({ status: 400, description: "The flag cannot be evaluated for this context" }))
export type OfrepFailure = typeof OfrepFailure.Type

export const OfrepNotFound = Schema.Struct({
  key: Schema.String,
  errorCode: Schema.Literal("FLAG_NOT_FOUND"),
  errorDetails: Schema.optional(Schema.String)
}).annotations(HttpApiSchema.annotations({ status: 404, description: "No such flag in the caller's organisation" }))
export type OfrepNotFound = typeof OfrepNotFound.Type

export const OfrepBulkFailure = Schema.Struct({
  errorCode: OfrepErrorCode,
  errorDetails: Schema.optional(Schema.String)
}).annotations(HttpApiSchema.annotations({ status: 400, description: "The request cannot be evaluated" }))

export const OfrepBulkResponse = Schema.Struct({ flags: Schema.Array(Schema.Union(OfrepSuccess, OfrepFailure)) })
