import { SqlClient } from "@effect/sql"
import { DateTime, Effect, Option } from "effect"
import type { Role } from "../../core/Auth.ts"
import type { ApiKey, AuditParams, Member } from "./Domain.ts"

interface MemberRow {
  user_id: string
  email: string
  role: Role
  created_at: Date
}

const toMember = (row: MemberRow): Member => ({
  userId: row.user_id,
  email: row.email,
  role: row.role,
  createdAt: DateTime.unsafeFromDate(row.created_at)
})

interface ApiKeyRow {
  id: string
  name: string
  permissions: Array<string>
  created_by: string
  created_at: Date
  expires_at: Date | null
  revoked_at: Date | null
  last_used_at: Date | null
}

const optionalDate = (date: Date | null) => (date === null ? null : DateTime.unsafeFromDate(date))

const toApiKey = (row: ApiKeyRow): ApiKey => ({
  id: row.id,
  name: row.name,
  permissions: row.permissions,
  createdBy: row.created_by,
  createdAt: DateTime.unsafeFromDate(row.created_at),
  expiresAt: optionalDate(row.expires_at),
  revokedAt: optionalDate(row.revoked_at),
  lastUsedAt: optionalDate(row.last_used_at)
})

const apiKeyColumns = "id, name, permissions, created_by, created_at, expires_at, revoked_at, last_used_at"

interface AuditRow {
  id: string
  at: Date
  actor_kind: string
  actor_id: string
  action: string
  target_type: string | null
  target_id: string | null
  request_id: string | null
  details: unknown
}

const toDate = (value: DateTime.Utc | undefined) => (value === undefined ? null : DateTime.toDateUtc(value))

/**
 * An organisation's members, API keys and audit log. Every method runs inside the caller's
 * tenant transaction (`withTenant`), so row-level security confines it to that organisation;
 * the `org_id = core.current_org_id()` filters are for the indexes, not for safety.
 */
export class AdminRepo extends Effect.Service<AdminRepo>()("identity/AdminRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const orgName = sql<{ name: string }>`select name from identity.orgs where id = core.current_org_id()`.pipe(
      Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (r) => r.name))
    )

    const userEmail = (userId: string) =>
      sql<{ email: string }>`select email from identity.users where id = ${userId}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (r) => r.email))
      )

    const members = sql<MemberRow>`
      select m.user_id, u.email, m.role, m.created_at
        from identity.memberships m join identity.users u on u.id = m.user_id
       where m.org_id = core.current_org_id()
       order by m.created_at, m.user_id`.pipe(Effect.map((rows) => rows.map(toMember)), Effect.withSpan("AdminRepo.members"))

    const member = (userId: string) =>
      sql<MemberRow>`
        select m.user_id, u.email, m.role, m.created_at
          from identity.memberships m join identity.users u on u.id = m.user_id
         where m.org_id = core.current_org_id() and m.user_id = ${userId}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toMember))
      )

    /** None when the user is a member already. */
    const addMember = (userId: string, role: Role) =>
      sql<{ user_id: string }>`
        insert into identity.memberships (org_id, user_id, role) values (core.current_org_id(), ${userId}, ${role})
        on conflict (org_id, user_id) do nothing
        returning user_id`.pipe(Effect.map((rows) => rows.length === 1))

    /**
     * Locks the organisation's owner memberships until the transaction ends, so two
     * concurrent demotions cannot both see another owner left.
     */
    const lockOwners = sql<{ user_id: string }>`
      select user_id from identity.memberships
       where org_id = core.current_org_id() and role = 'owner'
       for update`.pipe(Effect.map((rows) => rows.map((r) => r.user_id)))

    const setRole = (userId: string, role: Role) =>
      sql`update identity.memberships set role = ${role} where org_id = core.current_org_id() and user_id = ${userId}`.pipe(
        Effect.asVoid
      )

    const removeMember = (userId: string) =>
      sql`delete from identity.memberships where org_id = core.current_org_id() and user_id = ${userId}`.pipe(Effect.asVoid)

    const insertApiKey = (key: {
      readonly name: string
      readonly permissions: ReadonlyArray<string>
      readonly secretHash: Buffer
      readonly createdBy: string
      readonly expiresAt: Date | null
    }) =>
      sql<ApiKeyRow>`
        insert into identity.api_keys (org_id, name, permissions, secret_hash, created_by, expires_at)
        values (core.current_org_id(), ${key.name}, ${key.permissions}::text[], ${key.secretHash}, ${key.createdBy}, ${key.expiresAt})
        returning ${sql.literal(apiKeyColumns)}`.pipe(Effect.map((rows) => toApiKey(rows[0]!)))

    const apiKeys = sql<ApiKeyRow>`
      select ${sql.literal(apiKeyColumns)} from identity.api_keys
       where org_id = core.current_org_id()
       order by created_at desc, id`.pipe(Effect.map((rows) => rows.map(toApiKey)), Effect.withSpan("AdminRepo.apiKeys"))

    /** None when there is no such key in this organisation or it was revoked already. */
    const revokeApiKey = (id: string) =>
      sql<{ name: string }>`
        update identity.api_keys set revoked_at = now()
         where id = ${id} and org_id = core.current_org_id() and revoked_at is null
        returning name`.pipe(Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (r) => r.name)))

    const audit = (params: AuditParams) =>
      Effect.gen(function* () {
        const rows = yield* sql<AuditRow>`
          select id::text, at, actor_kind, actor_id, action, target_type, target_id, request_id, details
            from core.audit_log
           where org_id = core.current_org_id()
             and (${params.action ?? null}::text is null or action = ${params.action ?? null})
             and (${params.actorId ?? null}::text is null or actor_id = ${params.actorId ?? null})
             and (${params.targetType ?? null}::text is null or target_type = ${params.targetType ?? null})
             and (${params.targetId ?? null}::text is null or target_id = ${params.targetId ?? null})
             and (${toDate(params.since)}::timestamptz is null or at >= ${toDate(params.since)})
             and (${toDate(params.until)}::timestamptz is null or at < ${toDate(params.until)})
             and (${params.cursor ?? null}::bigint is null or id < ${params.cursor ?? null})
           order by id desc
           limit ${params.limit + 1}`
        const items = rows.slice(0, params.limit).map((row) => ({
          id: Number(row.id),
          at: DateTime.unsafeFromDate(row.at),
          actorKind: row.actor_kind,
          actorId: row.actor_id,
          action: row.action,
          targetType: row.target_type,
          targetId: row.target_id,
          requestId: row.request_id,
          details: row.details
        }))
        const nextCursor = rows.length > params.limit ? String(items[items.length - 1]!.id) : null
        return { items, nextCursor }
      }).pipe(Effect.withSpan("AdminRepo.audit"))

    return {
      orgName,
      userEmail,
      members,
      member,
      addMember,
      lockOwners,
      setRole,
      removeMember,
      insertApiKey,
      apiKeys,
      revokeApiKey,
      audit
    } as const
  })
}) {}
