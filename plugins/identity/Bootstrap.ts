import { SqlClient } from "@effect/sql"
import { Config, Effect, Layer, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { recordAudit } from "../../core/Audit.ts"
import { Options } from "./Domain.ts"
import { hashPassword } from "./Passwords.ts"

const bootstrapEmail = Config.string("TRELLIS_BOOTSTRAP_EMAIL").pipe(
  Config.map((email) => email.trim().toLowerCase()),
  Config.validate({ message: "TRELLIS_BOOTSTRAP_EMAIL must be an email address", validation: (email) => /^[^\s@]+@[^\s@]+$/.test(email) }),
  Config.withDefault("admin@localhost")
)

const bootstrapPassword = Config.redacted("TRELLIS_BOOTSTRAP_PASSWORD").pipe(
  Config.validate({
    message: "TRELLIS_BOOTSTRAP_PASSWORD must be at least 12 characters",
    validation: (password) => Redacted.value(password).length >= 12
  }),
  Config.option
)

/**
 * On a database without users: an organisation and its owner, from TRELLIS_BOOTSTRAP_EMAIL and
 * TRELLIS_BOOTSTRAP_PASSWORD, or with a generated password printed once. A transaction-scoped
 * advisory lock makes processes starting together take turns, so exactly one creates them.
 */
export const layerBootstrap = Layer.effectDiscard(
  Effect.gen(function* () {
    const options = yield* Options
    const sql = yield* SqlClient.SqlClient
    const email = yield* bootstrapEmail
    const configured = yield* bootstrapPassword
    const password = Option.getOrElse(configured, () => Redacted.make(randomBytes(18).toString("base64url")))
    const created = yield* sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`select pg_advisory_xact_lock(hashtext('trellis.identity.bootstrap'))`
        const users = yield* sql`select 1 from identity.users limit 1`
        if (users.length > 0) return false
        const passwordHash = yield* hashPassword(password)
        const [org] = yield* sql<{ id: string }>`insert into identity.orgs (name) values (${options.bootstrapOrgName}) returning id`
        const [user] = yield* sql<{ id: string }>`
          insert into identity.users (email, password_hash) values (${email}, ${passwordHash}) returning id`
        yield* sql`insert into identity.memberships (org_id, user_id, role) values (${org!.id}, ${user!.id}, 'owner')`
        yield* recordAudit({
          action: "identity.bootstrap",
          actor: { kind: "system", id: "bootstrap" },
          orgId: org!.id,
          targetType: "user",
          targetId: user!.id,
          details: { role: "owner" }
        })
        return true
      })
    )
    if (!created) return
    yield* Effect.logInfo("created the first organisation and its owner").pipe(
      Effect.annotateLogs({ org: options.bootstrapOrgName, email })
    )
    if (Option.isNone(configured)) {
      // Printed, never logged: logs are shipped and kept, this line is seen once by whoever starts the process.
      yield* Effect.sync(() =>
        process.stdout.write(
          `\nCreated the owner ${email} of organisation "${options.bootstrapOrgName}" with a generated password (shown once):\n  ${Redacted.value(password)}\nLog in with POST /api/v1/identity/login.\n\n`
        )
      )
    }
  }).pipe(Effect.withSpan("identity.bootstrap"))
)
