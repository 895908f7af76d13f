import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import type { Role } from "../../core/Auth.ts"
import { traced } from "../../core/Tracing.ts"

export interface LoginCandidate {
  readonly userId: string
  readonly passwordHash: string
  /** The membership the token would act for: the requested org, else the first one. */
  readonly orgId: string | null
  readonly role: Role | null
}

export type AttemptDecision =
  | { readonly _tag: "Allowed"; readonly lockedNow: boolean }
  | { readonly _tag: "Locked"; readonly retryInSeconds: number }

export interface RefreshSession {
  readonly familyId: string
  readonly orgId: string
  readonly userId: string
}

export type SpentRefreshToken =
  | { readonly _tag: "Reused"; readonly session: RefreshSession }
  | { readonly _tag: "Dead" }

/**
 * The SQL of login, refresh, logout, credential verification and user accounts. All of it is
 * platform work (no tenant set): the organisation is not known yet or is what is being
 * verified, and users are global.
 */
export class PlatformRepo extends Effect.Service<PlatformRepo>()("identity/PlatformRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const loginCandidate = (email: string, org: string | undefined) =>
      sql<{ id: string; password_hash: string; org_id: string | null; role: Role | null }>`
        select u.id, u.password_hash, m.org_id, m.role
          from identity.users u
          left join lateral (
            select org_id, role from identity.memberships
             where user_id = u.id and (${org ?? null}::uuid is null or org_id = ${org ?? null}::uuid)
             order by created_at, org_id
             limit 1
          ) m on true
         where lower(u.email) = ${email.toLowerCase()}`.pipe(
        Effect.map((rows) =>
          Option.map(
            Option.fromNullable(rows[0]),
            (row): LoginCandidate => ({ userId: row.id, passwordHash: row.password_hash, orgId: row.org_id, role: row.role })
          )
        ),
        Effect.withSpan("PlatformRepo.loginCandidate")
      )

    /**
     * Counts an attempt BEFORE the password is checked, so concurrent guesses cannot all slip
     * in under the threshold; a successful login clears the counter. The attempt that reaches
     * the threshold sets the lock. An expired lock or window starts a new count.
     */
    const recordAttempt = (emailKey: string, threshold: number, minutes: number) =>
      Effect.gen(function* () {
        const rows = yield* sql<{ failures: number; locked_until: Date | null }>`
          insert into identity.login_attempts as a (email_key, failures, window_started_at, locked_until)
          values (${emailKey}, 1, now(),
                  case when 1 >= ${threshold} then now() + make_interval(mins => ${minutes}) end)
          on conflict (email_key) do update set
            failures = case when a.locked_until is not null or a.window_started_at <= now() - make_interval(mins => ${minutes})
                            then 1 else a.failures + 1 end,
            window_started_at = case when a.locked_until is not null or a.window_started_at <= now() - make_interval(mins => ${minutes})
                                     then now() else a.window_started_at end,
            locked_until = case when (case when a.locked_until is not null or a.window_started_at <= now() - make_interval(mins => ${minutes})
                                           then 1 else a.failures + 1 end) >= ${threshold}
                                then now() + make_interval(mins => ${minutes}) end
          where a.locked_until is null or a.locked_until <= now()
          returning failures, locked_until`
        if (rows[0]) return { _tag: "Allowed", lockedNow: rows[0].locked_until !== null } satisfies AttemptDecision
        const locked = yield* sql<{ seconds: number }>`
          select greatest(1, ceil(extract(epoch from locked_until - now())))::int as seconds
            from identity.login_attempts where email_key = ${emailKey}`
        return { _tag: "Locked", retryInSeconds: locked[0]?.seconds ?? 1 } satisfies AttemptDecision
      }).pipe(Effect.withSpan("PlatformRepo.recordAttempt"))

    const clearAttempts = (emailKey: string) =>
      sql`delete from identity.login_attempts where email_key = ${emailKey}`.pipe(Effect.asVoid)

    const userIdByEmail = (email: string) =>
      sql<{ id: string }>`select id from identity.users where lower(email) = ${email.toLowerCase()}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (r) => r.id))
      )

    /** None when the email was taken meanwhile. */
    const insertUser = (email: string, passwordHash: string) =>
      sql<{ id: string }>`
        insert into identity.users (email, password_hash) values (${email}, ${passwordHash})
        on conflict ((lower(email))) do nothing
        returning id`.pipe(Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (r) => r.id)))

    const passwordHash = (userId: string) =>
      sql<{ password_hash: string }>`select password_hash from identity.users where id = ${userId}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (r) => r.password_hash))
      )

    const setPassword = (userId: string, hash: string) =>
      sql`update identity.users set password_hash = ${hash} where id = ${userId}`.pipe(Effect.asVoid)

    /** Every live session of the user, in every organisation; how many were revoked. */
    const revokeFamiliesOfUser = (userId: string) =>
      sql<{ n: number }>`
        with revoked as (
          update identity.refresh_families set revoked_at = now() where user_id = ${userId} and revoked_at is null returning 1
        )
        select count(*)::int as n from revoked`.pipe(Effect.map((rows) => rows[0]?.n ?? 0))

    const membershipRole = (orgId: string, userId: string) =>
      sql<{ role: Role }>`
        select role from identity.memberships where org_id = ${orgId} and user_id = ${userId}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (r) => r.role)),
        traced("PlatformRepo.membershipRole")
      )

    const startFamily = (orgId: string, userId: string) =>
      sql<{ id: string }>`
        insert into identity.refresh_families (org_id, user_id) values (${orgId}, ${userId}) returning id`.pipe(
        Effect.map((rows) => rows[0]!.id)
      )

    const insertRefreshToken = (hash: Buffer, familyId: string, orgId: string, ttlDays: number) =>
      sql`
        insert into identity.refresh_tokens (token_hash, family_id, org_id, expires_at)
        values (${hash}, ${familyId}, ${orgId}, now() + make_interval(days => ${ttlDays}))`.pipe(Effect.asVoid)

    /**
     * Marks a live token used and returns its session; of concurrent calls with one token
     * exactly one gets a row (the others wait on the row lock and then see `used_at` set).
     */
    const spend = (hash: Buffer) =>
      sql<{ family_id: string; org_id: string; user_id: string }>`
        update identity.refresh_tokens t set used_at = now()
          from identity.refresh_families f
         where t.token_hash = ${hash} and t.used_at is null and t.expires_at > now()
           and f.id = t.family_id and f.revoked_at is null
        returning t.family_id, f.org_id, f.user_id`.pipe(
        Effect.map((rows) =>
          Option.map(Option.fromNullable(rows[0]), (r): RefreshSession => ({ familyId: r.family_id, orgId: r.org_id, userId: r.user_id }))
        ),
        Effect.withSpan("PlatformRepo.spend")
      )

    /** Why a token could not be spent: already used (a replay) or revoked, expired, unknown. */
    const whySpent = (hash: Buffer) =>
      sql<{ family_id: string; org_id: string; user_id: string; reused: boolean }>`
        select t.family_id, f.org_id, f.user_id, (t.used_at is not null and f.revoked_at is null) as reused
          from identity.refresh_tokens t join identity.refresh_families f on f.id = t.family_id
         where t.token_hash = ${hash}`.pipe(
        Effect.map((rows): SpentRefreshToken => {
          const row = rows[0]
          return row?.reused
            ? { _tag: "Reused", session: { familyId: row.family_id, orgId: row.org_id, userId: row.user_id } }
            : { _tag: "Dead" }
        })
      )

    /** Revokes the family of a token (every token of it); None when it was revoked already or unknown. */
    const revokeFamilyOf = (hash: Buffer) =>
      sql<{ id: string; org_id: string; user_id: string }>`
        update identity.refresh_families f set revoked_at = now()
          from identity.refresh_tokens t
         where t.token_hash = ${hash} and f.id = t.family_id and f.revoked_at is null
        returning f.id, f.org_id, f.user_id`.pipe(
        Effect.map((rows) =>
          Option.map(Option.fromNullable(rows[0]), (r): RefreshSession => ({ familyId: r.id, orgId: r.org_id, userId: r.user_id }))
        )
      )

    /** True when this call revoked it (false: revoked already). */
    const revokeFamily = (familyId: string) =>
      sql<{ id: string }>`
        update identity.refresh_families set revoked_at = now() where id = ${familyId} and revoked_at is null
        returning id`.pipe(Effect.map((rows) => rows.length === 1))

    const apiKeyForVerification = (id: string) =>
      sql<{ org_id: string; permissions: Array<string>; secret_hash: Buffer; expires_at: Date | null; last_used_at: Date | null }>`
        select org_id, permissions, secret_hash, expires_at, last_used_at from identity.api_keys
         where id = ${id} and revoked_at is null and (expires_at is null or expires_at > now())`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0])),
        traced("PlatformRepo.apiKeyForVerification")
      )

    /** At most one write a minute per key, whatever its traffic. */
    const touchApiKey = (id: string) =>
      sql`
        update identity.api_keys set last_used_at = now()
         where id = ${id} and (last_used_at is null or last_used_at < now() - interval '1 minute')`.pipe(Effect.asVoid)

    /**
     * Drops what can no longer be used: families whose every token has expired (a used token
     * is kept until then, to detect its reuse) and lockout counters past their window and lock.
     */
    const prune = (lockoutMinutes: number) =>
      sql<{ families: number; attempts: number }>`
        with families as (
          delete from identity.refresh_families f
           where not exists (select 1 from identity.refresh_tokens t where t.family_id = f.id and t.expires_at > now())
             and f.created_at < now() - interval '1 hour'
          returning 1
        ), attempts as (
          delete from identity.login_attempts
           where window_started_at < now() - make_interval(mins => ${lockoutMinutes})
             and (locked_until is null or locked_until < now())
          returning 1
        )
        select (select count(*) from families)::int as families, (select count(*) from attempts)::int as attempts`.pipe(
        Effect.map((rows) => rows[0]!),
        Effect.withSpan("PlatformRepo.prune")
      )

    return {
      loginCandidate,
      recordAttempt,
      clearAttempts,
      userIdByEmail,
      insertUser,
      passwordHash,
      setPassword,
      revokeFamiliesOfUser,
      membershipRole,
      startFamily,
      insertRefreshToken,
      spend,
      whySpent,
      revokeFamilyOf,
      revokeFamily,
      apiKeyForVerification,
      touchApiKey,
      prune
    } as const
  })
}) {}
