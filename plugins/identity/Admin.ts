import { SqlClient } from "@effect/sql"
import { DateTime, Effect, Option, Redacted } from "effect"
import { recordAudit } from "../../core/Audit.ts"
import { CurrentActor, hasPermission, requirePermission, type Role } from "../../core/Auth.ts"
import { BadRequest, Conflict, Forbidden, NotFound } from "../../core/Errors.ts"
import { Cache } from "../../core/Cache.ts"
import { PluginRegistry } from "../../core/Registry.ts"
import { currentOrgId, inTenant, withTenant } from "../../core/Tenancy.ts"
import { AdminRepo } from "./AdminRepo.ts"
import type { AuditParams } from "./Domain.ts"
import { hashPassword } from "./Passwords.ts"
import { PlatformRepo } from "./Repo.ts"
import { formatApiKey, hashSecret, newOpaqueSecret } from "./Tokens.ts"
import { apiKeyCacheKey, membershipCacheKey } from "./Verifier.ts"

/** Granting, changing or removing the owner role takes an owner. */
const OWNER = "identity:owner"

const memberNotFound = (userId: string) =>
  new NotFound({ message: `user ${userId} is not a member of this organisation`, resource: "member", id: userId })

/** The caller's organisation's tenant transaction; the operator has none to act on. */
const inOrg = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  withTenant(effect).pipe(
    Effect.catchTag("NoTenant", () =>
      Effect.fail(new Forbidden({ message: "this route acts on an organisation: authenticate as one of its members or API keys" }))
    )
  )

/**
 * An organisation's members, API keys and audit log, for its admins. Everything runs in the
 * caller's tenant transaction, so an admin never reaches another organisation's rows.
 */
export class Admin extends Effect.Service<Admin>()("identity/Admin", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* AdminRepo
    const platform = yield* PlatformRepo
    const registry = yield* PluginRegistry
    const registered = registry.permissions.map((p) => p.item.name)
    const cache = yield* Cache

    /** After a membership change in the caller's org committed: the verifier's cached role is stale. */
    const forgetMembership = (userId: string) =>
      Effect.flatMap(currentOrgId, (orgId) =>
        Option.isSome(orgId) ? cache.invalidateTags([membershipCacheKey(orgId.value, userId)]) : Effect.void
      )

    const me = Effect.gen(function* () {
      const actor = yield* CurrentActor
      const permissions = actor.permissions.includes("*") ? registered : actor.permissions
      const base = { kind: actor.kind, id: actor.id, roles: actor.roles, permissions }
      if (Option.isNone(actor.orgId)) return { ...base, user: null, org: null }
      const orgId = actor.orgId.value
      const [name, email] = yield* inOrg(
        Effect.all([repo.orgName, actor.kind === "user" ? repo.userEmail(actor.id) : Effect.succeed(Option.none<string>())])
      )
      return {
        ...base,
        user: Option.match(email, { onNone: () => null, onSome: (email) => ({ id: actor.id, email }) }),
        org: Option.match(name, { onNone: () => null, onSome: (name) => ({ id: orgId, name }) })
      }
    })

    const members = inOrg(repo.members)

    /** Creates the user if the email is new (a password is then required), and adds them. */
    const addUser = (request: { readonly email: string; readonly password?: Redacted.Redacted<string> | undefined; readonly role: Role }) =>
      Effect.gen(function* () {
        if (request.role === "owner") yield* requirePermission(OWNER)
        const existing = yield* platform.userIdByEmail(request.email)
        if (Option.isSome(existing) && request.password !== undefined) {
          return yield* new Conflict({ message: "a user with this email exists; add them without a password" })
        }
        if (Option.isNone(existing) && request.password === undefined) {
          return yield* new BadRequest({ message: "password is required for a new user", field: "password" })
        }
        const passwordHash = request.password === undefined ? undefined : yield* hashPassword(request.password)
        return yield* sql.withTransaction(
          Effect.gen(function* () {
            const created = passwordHash === undefined ? Option.none<string>() : yield* platform.insertUser(request.email, passwordHash)
            if (passwordHash !== undefined && Option.isNone(created)) {
              return yield* new Conflict({ message: "a user with this email was just created; add them without a password" })
            }
            const userId = Option.getOrElse(created, () => Option.getOrThrow(existing))
            // Last: the tenant role and org set here last until the transaction ends.
            return yield* inOrg(
              Effect.gen(function* () {
                if (!(yield* repo.addMember(userId, request.role))) {
                  return yield* new Conflict({ message: `${request.email} is a member already` })
                }
                if (Option.isSome(created)) yield* recordAudit({ action: "identity.user_created", targetType: "user", targetId: userId })
                yield* recordAudit({
                  action: "identity.member_added",
                  targetType: "user",
                  targetId: userId,
                  details: { role: request.role }
                })
                return Option.getOrThrow(yield* repo.member(userId))
              })
            )
          })
        ).pipe(Effect.tap((member) => forgetMembership(member.userId)))
      })

    /**
     * A new organisation with its first owner. Only the operator (the platform's own key,
     * which belongs to no organisation) creates organisations.
     */
    const createOrg = (request: {
      readonly name: string
      readonly owner: { readonly email: string; readonly password?: Redacted.Redacted<string> | undefined }
    }) =>
      Effect.gen(function* () {
        const actor = yield* CurrentActor
        if (actor.kind !== "operator") {
          return yield* new Forbidden({ message: "only the operator key creates organisations", permission: "operator" })
        }
        const { email, password } = request.owner
        const existing = yield* platform.userIdByEmail(email)
        if (Option.isSome(existing) && password !== undefined) {
          return yield* new Conflict({ message: "a user with this email exists; name them without a password" })
        }
        if (Option.isNone(existing) && password === undefined) {
          return yield* new BadRequest({ message: "password is required for a new owner", field: "owner.password" })
        }
        const passwordHash = password === undefined ? undefined : yield* hashPassword(password)
        return yield* sql.withTransaction(
          Effect.gen(function* () {
            const [org] = yield* sql<{ id: string }>`insert into identity.orgs (name) values (${request.name}) returning id`
            const created = passwordHash === undefined ? Option.none<string>() : yield* platform.insertUser(email, passwordHash)
            if (passwordHash !== undefined && Option.isNone(created)) {
              return yield* new Conflict({ message: "a user with this email was just created; name them without a password" })
            }
            const ownerId = Option.getOrElse(created, () => Option.getOrThrow(existing))
            yield* inTenant(
              org!.id,
              Effect.gen(function* () {
                yield* repo.addMember(ownerId, "owner")
                yield* recordAudit({ action: "identity.org_created", targetType: "org", targetId: org!.id, details: { name: request.name } })
                yield* recordAudit({ action: "identity.member_added", targetType: "user", targetId: ownerId, details: { role: "owner" } })
              })
            )
            return { id: org!.id, name: request.name, ownerId }
          })
        )
      })

    /** The organisation must keep an owner: the owners are locked first, so concurrent demotions queue. */
    const guardOwner = (userId: string) =>
      Effect.gen(function* () {
        const owners = yield* repo.lockOwners
        const member = yield* repo.member(userId)
        if (Option.isNone(member)) return yield* memberNotFound(userId)
        return { member: member.value, lastOwner: owners.length === 1 && owners[0] === userId }
      })

    const changeRole = (userId: string, role: Role) =>
      inOrg(
        Effect.gen(function* () {
          const { member, lastOwner } = yield* guardOwner(userId)
          if (member.role === role) return member
          if (member.role === "owner" || role === "owner") yield* requirePermission(OWNER)
          if (lastOwner) return yield* new Conflict({ message: "the last owner cannot be demoted; make another member owner first" })
          yield* repo.setRole(userId, role)
          yield* recordAudit({
            action: "identity.member_role_changed",
            targetType: "user",
            targetId: userId,
            details: { from: member.role, to: role }
          })
          return { ...member, role }
        })
      ).pipe(Effect.tap(() => forgetMembership(userId)))

    const removeMember = (userId: string) =>
      inOrg(
        Effect.gen(function* () {
          const { member, lastOwner } = yield* guardOwner(userId)
          if (member.role === "owner") yield* requirePermission(OWNER)
          if (lastOwner) return yield* new Conflict({ message: "the last owner cannot be removed; make another member owner first" })
          yield* repo.removeMember(userId)
          yield* recordAudit({ action: "identity.member_removed", targetType: "user", targetId: userId, details: { role: member.role } })
        })
      ).pipe(Effect.tap(() => forgetMembership(userId)))

    /**
     * A key gets only registered permissions the creator holds itself, so an admin cannot mint
     * a key stronger than they are. The secret is returned here once and stored hashed.
     */
    const createApiKey = (request: {
      readonly name: string
      readonly permissions: ReadonlyArray<string>
      readonly expiresAt?: DateTime.Utc | undefined
    }) =>
      Effect.gen(function* () {
        const actor = yield* CurrentActor
        const unknown = request.permissions.find((p) => !registered.includes(p))
        if (unknown !== undefined) {
          return yield* new BadRequest({ message: `unknown permission ${unknown}`, field: "permissions" })
        }
        const withheld = request.permissions.find((p) => !hasPermission(actor, p))
        if (withheld !== undefined) {
          return yield* new Forbidden({ message: `cannot grant ${withheld}, which you do not hold`, permission: withheld })
        }
        if (request.expiresAt !== undefined && DateTime.lessThanOrEqualTo(request.expiresAt, yield* DateTime.now)) {
          return yield* new BadRequest({ message: "expiresAt must be in the future", field: "expiresAt" })
        }
        const secret = newOpaqueSecret()
        const permissions = [...new Set(request.permissions)]
        return yield* inOrg(
          Effect.gen(function* () {
            const key = yield* repo.insertApiKey({
              name: request.name,
              permissions,
              secretHash: hashSecret(secret),
              createdBy: `${actor.kind}:${actor.id}`,
              expiresAt: request.expiresAt === undefined ? null : DateTime.toDateUtc(request.expiresAt)
            })
            yield* recordAudit({
              action: "identity.api_key_created",
              targetType: "api_key",
              targetId: key.id,
              details: { name: key.name, permissions }
            })
            return { ...key, key: formatApiKey(key.id, secret) }
          })
        )
      })

    const apiKeys = inOrg(repo.apiKeys)

    const revokeApiKey = (id: string) =>
      inOrg(
        Effect.gen(function* () {
          const revoked = yield* repo.revokeApiKey(id)
          if (Option.isNone(revoked)) {
            return yield* new NotFound({ message: `no active API key ${id} in this organisation`, resource: "api_key", id })
          }
          yield* recordAudit({ action: "identity.api_key_revoked", targetType: "api_key", targetId: id, details: { name: revoked.value } })
        })
      ).pipe(Effect.tap(() => cache.invalidateTags([apiKeyCacheKey(id)])))

    const audit = (params: AuditParams) => inOrg(repo.audit(params))

    return { me, members, createOrg, addUser, changeRole, removeMember, createApiKey, apiKeys, revokeApiKey, audit } as const
  })
}) {}
