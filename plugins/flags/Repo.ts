import { SqlClient } from "@effect/sql"
import { DateTime, Effect, Option } from "effect"
import type { FlagDefinition, FlagKey, FlagType } from "./Domain.ts"
import type { AuditParams, Flag, FlagSpec, ListFlagsParams } from "./Model.ts"

/**
 * The flags tables. Everything but the stale scan runs inside a tenant transaction; the
 * explicit `org_id = core.current_org_id()` matches the primary key's leading column, and
 * outside a tenant it matches nothing rather than every organisation's rows.
 */

interface FlagRow {
  readonly key: string
  readonly type: FlagType
  readonly description: string
  readonly enabled: boolean
  readonly tags: ReadonlyArray<string>
  readonly environments: FlagDefinition["environments"]
  readonly variants: FlagDefinition["variants"]
  readonly archived_at: Date | null
  readonly stale_at: Date | null
  readonly created_by: string
  readonly created_at: Date
  readonly updated_by: string
  readonly updated_at: Date
}

const columns = `key, type, description, enabled, tags, environments, variants, archived_at, stale_at,
  created_by, created_at, updated_by, updated_at`

// Rows were validated against the Domain Schemas before they were written; the key's brand
// only records that validation.
export const specOf = (row: FlagRow): FlagSpec => ({
  key: row.key as FlagKey,
  type: row.type,
  description: row.description,
  enabled: row.enabled,
  tags: row.tags,
  environments: row.environments,
  variants: row.variants,
  archived: row.archived_at !== null
})

export const toFlag = (row: FlagRow): Flag => ({
  key: row.key,
  type: row.type,
  description: row.description,
  enabled: row.enabled,
  tags: row.tags,
  environments: row.environments,
  variants: row.variants,
  archived: row.archived_at !== null,
  archivedAt: row.archived_at === null ? null : DateTime.unsafeFromDate(row.archived_at),
  stale: row.stale_at !== null,
  createdBy: row.created_by,
  createdAt: DateTime.unsafeFromDate(row.created_at),
  updatedBy: row.updated_by,
  updatedAt: DateTime.unsafeFromDate(row.updated_at)
})

/** A live flag as evaluation reads it, with the version of its row. */
export interface RevisedDefinition {
  readonly revision: string
  readonly definition: FlagDefinition
}

type DefinitionRow = Omit<FlagDefinition, "archived"> & { readonly revision: string }

const revisedOf = ({ revision, ...flag }: DefinitionRow): RevisedDefinition => ({
  revision,
  definition: { ...flag, archived: false }
})

interface AuditRow {
  readonly id: string
  readonly action: string
  readonly actor_kind: string
  readonly actor_id: string
  readonly at: Date
  readonly request_id: string | null
  readonly details: { readonly before?: unknown; readonly after?: unknown }
}

/** Expected lifetimes in days by flag type, for the stale scan. */
export type Lifetimes = ReadonlyArray<{ readonly type: FlagType; readonly days: number }>

interface StaleFlag {
  readonly key: string
  readonly type: FlagType
  readonly created_at: Date
  readonly lifetime_days: number
  readonly age_days: number
}

const likePattern = (text: string) => `%${text.replace(/[\\%_]/g, "\\$&")}%`

export class FlagsRepo extends Effect.Service<FlagsRepo>()("flags/FlagsRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const cols = sql.literal(columns)
    // The row version: a new transaction id on every write, the time in case ids wrap around.
    const revision = sql.literal("xmin::text || ':' || (extract(epoch from updated_at) * 1000000)::bigint as revision")

    const get = (key: string, options: { readonly lock: boolean }) =>
      sql<FlagRow>`
        select ${cols} from flags.flags
         where org_id = core.current_org_id() and key = ${key}
         ${sql.literal(options.lock ? "for update" : "")}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0])),
        Effect.withSpan("FlagsRepo.get")
      )

    /** The named flags, locked until the transaction ends, so a diff is against what gets replaced. */
    const lockMany = (keys: ReadonlyArray<string>) =>
      sql<FlagRow>`
        select ${cols} from flags.flags
         where org_id = core.current_org_id() and key = any(${keys}::text[])
         order by key
         for update`.pipe(Effect.withSpan("FlagsRepo.lockMany"))

    const list = (params: ListFlagsParams) => {
      const q = params.q === undefined ? null : likePattern(params.q)
      return sql<FlagRow>`
        select ${cols} from flags.flags
         where org_id = core.current_org_id()
           and (archived_at is not null) = ${params.archived}
           and (${params.type ?? null}::text is null or type = ${params.type ?? null})
           and (${params.tag ?? null}::text is null or tags @> array[${params.tag ?? null}::text])
           and (${q}::text is null or key ilike ${q} or description ilike ${q})
           and (${params.cursor ?? null}::text is null or key > ${params.cursor ?? null})
         order by key
         limit ${params.limit + 1}`.pipe(Effect.withSpan("FlagsRepo.list"))
    }

    const all = (options: { readonly includeArchived: boolean }) =>
      sql<FlagRow>`
        select ${cols} from flags.flags
         where org_id = core.current_org_id() and (${options.includeArchived} or archived_at is null)
         order by key`.pipe(Effect.withSpan("FlagsRepo.all"))

    /** Creates the flag unless its key exists (then nothing). */
    const insert = (spec: FlagSpec, actor: string) =>
      sql<FlagRow>`
        insert into flags.flags (org_id, key, type, description, enabled, tags, environments, variants, archived_at, created_by, updated_by)
        values (core.current_org_id(), ${spec.key}, ${spec.type}, ${spec.description}, ${spec.enabled}, ${spec.tags}::text[],
                ${JSON.stringify(spec.environments)}::jsonb, ${JSON.stringify(spec.variants)}::jsonb,
                case when ${spec.archived} then now() end, ${actor}, ${actor})
        on conflict (org_id, key) do nothing
        returning ${cols}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0])),
        Effect.withSpan("FlagsRepo.insert")
      )

    /** Creates or replaces the given definitions in one statement (import and updates). */
    const upsert = (specs: ReadonlyArray<FlagSpec>, actor: string) =>
      specs.length === 0
        ? Effect.succeed<ReadonlyArray<FlagRow>>([])
        : sql<FlagRow>`
            insert into flags.flags as f (org_id, key, type, description, enabled, tags, environments, variants, archived_at, created_by, updated_by)
            select core.current_org_id(), s.key, s.type, s.description, s.enabled,
                   array(select jsonb_array_elements_text(s.tags)), s.environments, s.variants,
                   case when s.archived then now() end, ${actor}, ${actor}
              from jsonb_to_recordset(${JSON.stringify(specs)}::jsonb)
                   as s(key text, type text, description text, enabled boolean, tags jsonb, environments jsonb, variants jsonb, archived boolean)
            on conflict (org_id, key) do update set
              type = excluded.type, description = excluded.description, enabled = excluded.enabled, tags = excluded.tags,
              environments = excluded.environments, variants = excluded.variants,
              archived_at = case when excluded.archived_at is null then null else coalesce(f.archived_at, excluded.archived_at) end,
              updated_by = excluded.updated_by, updated_at = now()
            returning ${cols}`.pipe(Effect.withSpan("FlagsRepo.upsert"))

    const remove = (key: string) =>
      sql`delete from flags.flags where org_id = core.current_org_id() and key = ${key}`.pipe(
        Effect.asVoid,
        Effect.withSpan("FlagsRepo.remove")
      )

    /** What evaluation reads: one live flag, or null (cached too, so unknown keys stay cheap). */
    const definition = (key: string) =>
      sql<DefinitionRow>`
        select ${revision}, key, type, description, enabled, environments, variants from flags.flags
         where org_id = core.current_org_id() and key = ${key} and archived_at is null`.pipe(
        Effect.map((rows) => (rows[0] === undefined ? null : revisedOf(rows[0]))),
        Effect.withSpan("FlagsRepo.definition")
      )

    const definitions = sql<DefinitionRow>`
      select ${revision}, key, type, description, enabled, environments, variants from flags.flags
       where org_id = core.current_org_id() and archived_at is null
       order by key`.pipe(Effect.map((rows) => rows.map(revisedOf)), Effect.withSpan("FlagsRepo.definitions"))

    /** Gives an organisation the default environments on its first write; concurrent callers insert once. */
    const ensureEnvironments = (defaults: ReadonlyArray<string>) =>
      sql`
        insert into flags.environments (org_id, name)
        select core.current_org_id(), name from unnest(${defaults}::text[]) as name
         where not exists (select 1 from flags.environments where org_id = core.current_org_id())
        on conflict do nothing`.pipe(Effect.asVoid, Effect.withSpan("FlagsRepo.ensureEnvironments"))

    /**
     * The organisation's environments. Flag writes lock them shared, so an environment cannot
     * be removed between their check and their commit (removal deletes first, then looks for
     * flags using it).
     */
    const environments = (options: { readonly lock: boolean }) =>
      sql<{ name: string; created_at: Date }>`
        select name, created_at from flags.environments where org_id = core.current_org_id() order by name
        ${sql.literal(options.lock ? "for share" : "")}`.pipe(Effect.withSpan("FlagsRepo.environments"))

    const addEnvironment = (name: string) =>
      sql`insert into flags.environments (org_id, name) values (core.current_org_id(), ${name}) on conflict do nothing`.pipe(
        Effect.asVoid,
        Effect.withSpan("FlagsRepo.addEnvironment")
      )

    const removeEnvironment = (name: string) =>
      sql`delete from flags.environments where org_id = core.current_org_id() and name = ${name}`.pipe(
        Effect.asVoid,
        Effect.withSpan("FlagsRepo.removeEnvironment")
      )

    /** Up to 10 flags (archived ones too) configuring the environment. */
    const flagsIn = (environment: string) =>
      sql<{ key: string }>`
        select key from flags.flags
         where org_id = core.current_org_id() and environments -> ${environment} is not null
         order by key limit 10`.pipe(Effect.map((rows) => rows.map((r) => r.key)))

    /** The flag's entries of the platform audit log, newest first. */
    const audit = (key: string, params: AuditParams) =>
      Effect.gen(function* () {
        const rows = yield* sql<AuditRow>`
          select id::text, action, actor_kind, actor_id, at, request_id, details from core.audit_log
           where org_id = core.current_org_id() and target_type = 'flag' and target_id = ${key}
             and (${params.cursor ?? null}::bigint is null or id < ${params.cursor ?? null})
           order by id desc
           limit ${params.limit + 1}`
        const items = rows.slice(0, params.limit).map((r) => ({
          id: Number(r.id),
          action: r.action,
          actor: { kind: r.actor_kind, id: r.actor_id },
          at: DateTime.unsafeFromDate(r.at),
          requestId: r.request_id,
          before: r.details.before ?? null,
          after: r.details.after ?? null
        }))
        return { items, nextCursor: rows.length > params.limit ? String(items[items.length - 1]!.id) : null }
      }).pipe(Effect.withSpan("FlagsRepo.audit"))

    /** Platform work: every organisation's unreported flags past their lifetime, in one statement. */
    const staleCandidates = (lifetimes: Lifetimes) =>
      sql<{ org_id: string; key: string }>`
        select f.org_id::text, f.key from flags.flags f
          join jsonb_to_recordset(${JSON.stringify(lifetimes)}::jsonb) as l(type text, days int) on l.type = f.type
         where f.archived_at is null and f.stale_at is null and f.created_at < now() - make_interval(days => l.days)
         order by f.org_id, f.key`.pipe(Effect.withSpan("FlagsRepo.staleCandidates"))

    /** Marks the tenant's flags reported, returning those this call marked (a concurrent run gets none). */
    const markStale = (keys: ReadonlyArray<string>, lifetimes: Lifetimes) =>
      sql<StaleFlag>`
        update flags.flags f set stale_at = now()
          from jsonb_to_recordset(${JSON.stringify(lifetimes)}::jsonb) as l(type text, days int)
         where f.org_id = core.current_org_id() and f.key = any(${keys}::text[]) and l.type = f.type
           and f.archived_at is null and f.stale_at is null
        returning f.key, f.type, f.created_at, l.days as lifetime_days,
                  floor(extract(epoch from now() - f.created_at) / 86400)::int as age_days`.pipe(
        Effect.withSpan("FlagsRepo.markStale")
      )

    return {
      get,
      lockMany,
      list,
      all,
      insert,
      upsert,
      remove,
      definition,
      definitions,
      ensureEnvironments,
      environments,
      addEnvironment,
      removeEnvironment,
      flagsIn,
      audit,
      staleCandidates,
      markStale
    } as const
  })
}) {}
