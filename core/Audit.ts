import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Option } from "effect"
import { CurrentActor } from "./Actor.ts"
import { currentOrgId } from "./Tenancy.ts"
import { traced } from "./Tracing.ts"

/** The id of the HTTP request being served (also in its logs, span and `x-request-id`). */
export class CurrentRequestId extends Context.Reference<CurrentRequestId>()("trellis/CurrentRequestId", {
  defaultValue: (): Option.Option<string> => Option.none()
}) {}

export interface AuditEntry {
  /** `<plugin>.<verb>`: `identity.login`, `flags.update`, ... */
  readonly action: string
  readonly targetType?: string
  readonly targetId?: string
  /** What changed; never secrets. */
  readonly details?: Record<string, unknown>
  /** Who, when there is no authenticated actor (a failed login names the account tried). */
  readonly actor?: { readonly kind: string; readonly id: string }
  /** The org, when the current tenant is not the one concerned (e.g. a login). */
  readonly orgId?: string
}

/**
 * Appends to the audit log on the current SQL connection, so an audited write and its
 * entry commit together. Runs under the tenant's row-level security like any tenant write.
 */
export const recordAudit = (entry: AuditEntry): Effect.Effect<void, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const actor = yield* Effect.serviceOption(CurrentActor)
    const orgId = entry.orgId ?? Option.getOrNull(yield* currentOrgId)
    const requestId = Option.getOrNull(yield* CurrentRequestId)
    const who = entry.actor ?? Option.match(actor, { onNone: () => ({ kind: "system", id: "system" }), onSome: (a) => a })
    yield* sql`
      insert into core.audit_log (org_id, actor_kind, actor_id, action, target_type, target_id, request_id, details)
      values (${orgId}, ${who.kind}, ${who.id}, ${entry.action}, ${entry.targetType ?? null}, ${entry.targetId ?? null},
              ${requestId}, ${JSON.stringify(entry.details ?? {})}::jsonb)`
  }).pipe(traced("audit.record", { attributes: { "audit.action": entry.action } }))
