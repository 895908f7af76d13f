import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { DateTime, Effect, Option } from "effect"
import { CurrentActor } from "../../core/Actor.ts"
import { recordAudit } from "../../core/Audit.ts"
import { BadRequest, Conflict, Forbidden, NotFound } from "../../core/Errors.ts"
import { currentOrgId, NoTenant, withTenant } from "../../core/Tenancy.ts"
import type { EnvironmentConfig } from "./Domain.ts"
import {
  FlagsConfig,
  type AuditParams,
  type CreateFlag,
  type FlagsDocument,
  type FlagSpec,
  type ImportResult,
  type ListFlagsParams,
  type UpdateFlag
} from "./Model.ts"
import { FlagsRepo, specOf, toFlag } from "./Repo.ts"
import { FlagStore } from "./Store.ts"
import { diff, sameJson, specProblem } from "./Validation.ts"

const noOrganisation = new Forbidden({
  message: "flags belong to an organisation: call with an organisation's API key or a member's token"
})

const mergeEnvironments = (
  current: FlagSpec["environments"],
  changes: Readonly<Record<string, EnvironmentConfig | null>>
): FlagSpec["environments"] => {
  const merged: Record<string, EnvironmentConfig> = { ...current }
  for (const [name, config] of Object.entries(changes)) {
    if (config === null) delete merged[name]
    else merged[name] = config
  }
  return merged
}

const notFound = (key: string) => new NotFound({ message: `flag ${key} not found`, resource: "flag", id: key })

/**
 * Flag administration for the caller's organisation. Every change runs in one tenant
 * transaction with its audit entry (the changed fields before and after), and invalidates the
 * organisation's cached definitions once committed.
 */
export class FlagsAdmin extends Effect.Service<FlagsAdmin>()("flags/FlagsAdmin", {
  effect: Effect.gen(function* () {
    const repo = yield* FlagsRepo
    const store = yield* FlagStore
    const options = yield* FlagsConfig
    const sql = yield* SqlClient.SqlClient

    const orgId = Effect.flatMap(currentOrgId, Option.match({ onNone: () => Effect.fail(noOrganisation), onSome: Effect.succeed }))

    const actorName = Effect.map(Effect.serviceOption(CurrentActor), Option.match({ onNone: () => "system", onSome: (a) => `${a.kind}:${a.id}` }))

    /** Tenant work; a database failure is a defect (a 500 whose cause stays in the logs). */
    const tenant = <A, E, R>(
      effect: Effect.Effect<A, E | SqlError, R>
    ): Effect.Effect<A, Exclude<E, SqlError | NoTenant> | Forbidden, Exclude<R, SqlClient.SqlClient>> =>
      Effect.zipRight(orgId, withTenant(effect)).pipe(
        Effect.catchIf(
          (error): error is SqlError | NoTenant => error instanceof SqlError || error instanceof NoTenant,
          (error) => (error instanceof SqlError ? Effect.die(error) : Effect.fail(noOrganisation))
        ),
        Effect.provideService(SqlClient.SqlClient, sql)
      )

    const change = <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>) =>
      Effect.flatMap(orgId, (org) => Effect.tap(tenant(effect), () => store.invalidate(org)))

    const environmentNames = Effect.zipRight(
      repo.ensureEnvironments(options.environments),
      Effect.map(repo.environments({ lock: true }), (rows) => new Set(rows.map((r) => r.name)))
    )

    const validate = (spec: FlagSpec, prefix = "") =>
      Effect.flatMap(environmentNames, (names) => {
        const problem = specProblem(spec, names, prefix)
        return problem === undefined ? Effect.void : Effect.fail(problem)
      })

    const audit = (action: string, key: string, before: FlagSpec | null, after: FlagSpec | null, extra: Record<string, unknown> = {}) =>
      recordAudit({ action, targetType: "flag", targetId: key, details: { ...diff(before, after), ...extra } })

    /** Applies `next` to the locked flag; a change that changes nothing writes nothing. */
    const mutate = (key: string, action: string, next: (current: FlagSpec) => FlagSpec) =>
      change(
        Effect.gen(function* () {
          const row = yield* repo.get(key, { lock: true })
          if (Option.isNone(row)) return yield* notFound(key)
          const before = specOf(row.value)
          const after = next(before)
          if (sameJson(before, after)) return toFlag(row.value)
          yield* validate(after)
          const [saved] = yield* repo.upsert([after], yield* actorName)
          yield* audit(action, key, before, after)
          return toFlag(saved!)
        })
      )

    const list = (params: ListFlagsParams) =>
      tenant(
        Effect.map(repo.list(params), (rows) => {
          const items = rows.slice(0, params.limit).map(toFlag)
          return { items, nextCursor: rows.length > params.limit ? items[items.length - 1]!.key : null }
        })
      )

    const get = (key: string) =>
      tenant(
        Effect.flatMap(repo.get(key, { lock: false }), Option.match({ onNone: () => Effect.fail(notFound(key)), onSome: (row) => Effect.succeed(toFlag(row)) }))
      )

    const create = (input: CreateFlag) =>
      change(
        Effect.gen(function* () {
          const spec: FlagSpec = { ...input, tags: [...new Set(input.tags)], archived: false }
          yield* validate(spec)
          const row = yield* repo.insert(spec, yield* actorName)
          if (Option.isNone(row)) return yield* new Conflict({ message: `flag ${input.key} already exists` })
          yield* audit("flags.create", spec.key, null, spec)
          return toFlag(row.value)
        })
      )

    const update = (key: string, patch: UpdateFlag) =>
      mutate(key, "flags.update", (current) => ({
        ...current,
        ...(patch.type === undefined ? {} : { type: patch.type }),
        ...(patch.description === undefined ? {} : { description: patch.description }),
        ...(patch.enabled === undefined ? {} : { enabled: patch.enabled }),
        ...(patch.tags === undefined ? {} : { tags: [...new Set(patch.tags)] }),
        ...(patch.variants === undefined ? {} : { variants: patch.variants }),
        environments: mergeEnvironments(current.environments, patch.environments ?? {})
      }))

    const setEnvironment = (key: string, environment: string, config: EnvironmentConfig) =>
      mutate(key, "flags.update", (current) => ({ ...current, environments: { ...current.environments, [environment]: config } }))

    const setArchived = (key: string, archived: boolean) =>
      mutate(key, archived ? "flags.archive" : "flags.restore", (current) => ({ ...current, archived }))

    /** Only an archived flag can be deleted, as in Unleash: archiving first gives clients a grace period. */
    const remove = (key: string) =>
      change(
        Effect.gen(function* () {
          const row = yield* repo.get(key, { lock: true })
          if (Option.isNone(row)) return yield* notFound(key)
          if (row.value.archived_at === null) return yield* new Conflict({ message: `flag ${key} is not archived; archive it before deleting it` })
          yield* repo.remove(key)
          yield* audit("flags.delete", key, specOf(row.value), null)
        })
      )

    /** The flag's audit trail; it outlives a deleted flag. */
    const auditTrail = (key: string, params: AuditParams) =>
      tenant(
        Effect.gen(function* () {
          const page = yield* repo.audit(key, params)
          if (page.items.length === 0 && params.cursor === undefined && Option.isNone(yield* repo.get(key, { lock: false }))) {
            return yield* notFound(key)
          }
          return page
        })
      )

    const exportAll = (includeArchived: boolean) =>
      tenant(
        Effect.gen(function* () {
          const rows = yield* repo.all({ includeArchived })
          return { version: 1 as const, exportedAt: DateTime.formatIso(yield* DateTime.now), flags: rows.map(specOf) }
        })
      )

    /** All or nothing: every definition is validated first, and the writes share one transaction. */
    const importAll = (document: FlagsDocument) =>
      change(
        Effect.gen(function* () {
          const names = yield* environmentNames
          const seen = new Set<string>()
          for (const [i, spec] of document.flags.entries()) {
            if (seen.has(spec.key)) {
              return yield* new BadRequest({ message: `flags[${i}].key: flag ${spec.key} appears twice`, field: `flags[${i}].key` })
            }
            seen.add(spec.key)
            const problem = specProblem(spec, names, `flags[${i}].`)
            if (problem !== undefined) return yield* problem
          }
          const existing = new Map((yield* repo.lockMany([...seen])).map((row) => [row.key, specOf(row)]))
          const result: { created: Array<string>; updated: Array<string>; unchanged: Array<string> } = { created: [], updated: [], unchanged: [] }
          const writes: Array<FlagSpec> = []
          for (const input of document.flags) {
            const spec: FlagSpec = { ...input, tags: [...new Set(input.tags)] }
            const before = existing.get(spec.key)
            if (before !== undefined && sameJson(before, spec)) {
              result.unchanged.push(spec.key)
              continue
            }
            ;(before === undefined ? result.created : result.updated).push(spec.key)
            writes.push(spec)
          }
          yield* repo.upsert(writes, yield* actorName)
          // recordAudit writes one entry per call; core has no batch form.
          yield* Effect.forEach(
            writes,
            (spec) => {
              const before = existing.get(spec.key) ?? null
              return audit(before === null ? "flags.create" : "flags.update", spec.key, before, spec, { source: "import" })
            },
            { discard: true }
          )
          return result satisfies ImportResult
        })
      )

    const environments = tenant(
      Effect.zipRight(
        repo.ensureEnvironments(options.environments),
        Effect.map(repo.environments({ lock: false }), (rows) =>
          rows.map((r) => ({ name: r.name, createdAt: DateTime.unsafeFromDate(r.created_at) }))
        )
      )
    )

    const addEnvironment = (name: string) =>
      change(
        Effect.gen(function* () {
          const names = yield* environmentNames
          if (!names.has(name)) {
            yield* repo.addEnvironment(name)
            yield* recordAudit({ action: "flags.environment.create", targetType: "environment", targetId: name })
          }
        })
      )

    /** Refused while a flag configures the environment (the failure rolls the delete back), or when it is the last one. */
    const removeEnvironment = (name: string) =>
      change(
        Effect.gen(function* () {
          const names = yield* environmentNames
          if (!names.has(name)) return yield* new NotFound({ message: `environment ${name} not found`, resource: "environment", id: name })
          if (names.size === 1) return yield* new Conflict({ message: `environment ${name} is the organisation's last one` })
          yield* repo.removeEnvironment(name)
          const using = yield* repo.flagsIn(name)
          if (using.length > 0) {
            return yield* new Conflict({ message: `environment ${name} is configured by flags ${using.join(", ")}; remove it from them first` })
          }
          yield* recordAudit({ action: "flags.environment.delete", targetType: "environment", targetId: name })
        })
      )

    return {
      list,
      get,
      create,
      update,
      setEnvironment,
      setArchived,
      remove,
      auditTrail,
      exportAll,
      importAll,
      environments,
      addEnvironment,
      removeEnvironment
    } as const
  })
}) {}
