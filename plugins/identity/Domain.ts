import { Context, Schema } from "effect"
import { ROLES } from "../../core/Auth.ts"

export const IdentityOptions = Schema.Struct({
  accessTokenTtlSeconds: Schema.optionalWith(Schema.Int.pipe(Schema.between(30, 86_400)), { default: () => 900 }),
  refreshTokenTtlDays: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 365)), { default: () => 30 }),
  /** Failed logins of one account within `lockoutMinutes` that lock it for `lockoutMinutes`. */
  lockoutThreshold: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 1000)), { default: () => 5 }),
  lockoutMinutes: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 1440)), { default: () => 15 }),
  /** Login attempts per client address. */
  loginRateLimit: Schema.optionalWith(
    Schema.Struct({
      limit: Schema.Int.pipe(Schema.positive()),
      windowSeconds: Schema.Int.pipe(Schema.positive())
    }),
    { default: () => ({ limit: 20, windowSeconds: 60 }) }
  ),
  /** The organisation the bootstrap owner is created in. */
  bootstrapOrgName: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1)), { default: () => "Default" }),
  /**
   * The HS256 key for access tokens. TRELLIS_JWT_SECRET overrides it; without either a key
   * is generated once into the data directory. Prefer the environment for real secrets.
   */
  jwtSecret: Schema.optional(Schema.Redacted(Schema.String.pipe(Schema.minLength(32)))),
  /**
   * How long a checked API key or membership is reused without asking the database. Revoking
   * a key and changing or removing a membership invalidate the entry at once (on every
   * instance when the cache is Redis); 0 checks the database on every request.
   */
  credentialCacheSeconds: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 300)), { default: () => 30 }),
  /** When `identity.prune` deletes expired refresh tokens and stale lockout counters (cron, UTC). */
  pruneSchedule: Schema.optionalWith(Schema.String, { default: () => "23 4 * * *" })
})
export type IdentityOptions = typeof IdentityOptions.Type

/** The plugin's options, for its services. */
export class Options extends Context.Tag("identity/Options")<Options, IdentityOptions>() {}

export const Role = Schema.Literal(...ROLES)

/** Deliberately loose (a full RFC 5322 check rejects real addresses); normalised to lower case. */
export const Email = Schema.Trim.pipe(
  Schema.compose(Schema.Lowercase),
  Schema.pattern(/^[^\s@]+@[^\s@]+$/, { message: () => "must be an email address" }),
  Schema.maxLength(320)
)

/**
 * A secret in a request body. The messages are fixed so that a rejected value is never echoed
 * back in the 400 (the default messages quote the actual value).
 */
const secret = (min: number, max: number) =>
  Schema.Redacted(
    Schema.String.pipe(
      Schema.minLength(min, { message: () => `must be at least ${min} characters` }),
      Schema.maxLength(max, { message: () => `must be at most ${max} characters` })
    )
  )

/** A new password: long enough to resist guessing, short enough to bound hashing work. */
export const NewPassword = secret(12, 1024)

export const LoginRequest = Schema.Struct({
  email: Email,
  password: secret(1, 1024),
  /** The organisation the token acts for; default: the user's first membership. */
  org: Schema.optional(Schema.UUID)
})

export const TokenResponse = Schema.Struct({
  accessToken: Schema.String,
  tokenType: Schema.Literal("Bearer"),
  expiresIn: Schema.Int,
  refreshToken: Schema.String
})
export type TokenResponse = typeof TokenResponse.Type

export const ChangePasswordRequest = Schema.Struct({
  currentPassword: secret(1, 1024),
  newPassword: NewPassword
})

export const RefreshRequest = Schema.Struct({
  refreshToken: secret(1, 512)
})

export const Me = Schema.Struct({
  kind: Schema.Literal("operator", "user", "api_key"),
  id: Schema.String,
  user: Schema.NullOr(Schema.Struct({ id: Schema.String, email: Schema.String })),
  org: Schema.NullOr(Schema.Struct({ id: Schema.String, name: Schema.String })),
  roles: Schema.Array(Schema.String),
  permissions: Schema.Array(Schema.String)
})

export const Member = Schema.Struct({
  userId: Schema.UUID,
  email: Schema.String,
  role: Role,
  createdAt: Schema.DateTimeUtc
})
export type Member = typeof Member.Type

export const AddUserRequest = Schema.Struct({
  email: Email,
  /** Required for a new user; an existing user is added as they are. */
  password: Schema.optionalWith(NewPassword, { exact: true }),
  role: Role
})

export const CreateOrgRequest = Schema.Struct({
  name: Schema.Trim.pipe(Schema.minLength(1), Schema.maxLength(200)),
  /** The first owner: a new user (with a password) or an existing one (without). */
  owner: Schema.Struct({
    email: Email,
    password: Schema.optionalWith(NewPassword, { exact: true })
  })
})

export const CreatedOrg = Schema.Struct({ id: Schema.String, name: Schema.String, ownerId: Schema.String })

export const ChangeRoleRequest = Schema.Struct({ role: Role })

export const UserIdPath = Schema.Struct({ userId: Schema.UUID })
export const KeyIdPath = Schema.Struct({ id: Schema.UUID })

export const CreateApiKeyRequest = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  permissions: Schema.Array(Schema.String).pipe(Schema.minItems(1), Schema.maxItems(200)),
  expiresAt: Schema.optional(Schema.DateTimeUtc)
})

export const ApiKey = Schema.Struct({
  id: Schema.UUID,
  name: Schema.String,
  permissions: Schema.Array(Schema.String),
  createdBy: Schema.String,
  createdAt: Schema.DateTimeUtc,
  expiresAt: Schema.NullOr(Schema.DateTimeUtc),
  revokedAt: Schema.NullOr(Schema.DateTimeUtc),
  lastUsedAt: Schema.NullOr(Schema.DateTimeUtc)
})
export type ApiKey = typeof ApiKey.Type

/** The one response that carries the key: `trl_<id>_<secret>`. */
export const CreatedApiKey = Schema.Struct({ ...ApiKey.fields, key: Schema.String })

export const AuditParams = Schema.Struct({
  action: Schema.optional(Schema.String),
  actorId: Schema.optional(Schema.String),
  targetType: Schema.optional(Schema.String),
  targetId: Schema.optional(Schema.String),
  since: Schema.optional(Schema.DateTimeUtc),
  until: Schema.optional(Schema.DateTimeUtc),
  limit: Schema.optionalWith(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 200)), { default: () => 50 }),
  cursor: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.positive()))
})
export type AuditParams = typeof AuditParams.Type

export const AuditEntry = Schema.Struct({
  id: Schema.Number,
  at: Schema.DateTimeUtc,
  actorKind: Schema.String,
  actorId: Schema.String,
  action: Schema.String,
  targetType: Schema.NullOr(Schema.String),
  targetId: Schema.NullOr(Schema.String),
  requestId: Schema.NullOr(Schema.String),
  details: Schema.Unknown
})

export const AuditPage = Schema.Struct({
  items: Schema.Array(AuditEntry),
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: Schema.NullOr(Schema.String)
})
