import { SqlClient } from "@effect/sql"
import { ConfigProvider, Effect, Layer, Redacted, Schema } from "effect"
import type { Role } from "../../../core/Auth.ts"
import type { Plugin } from "../../../core/Plugin.ts"
import { IdentityOptions } from "../../../plugins/identity/Domain.ts"
import { identity } from "../../../plugins/identity/index.ts"
import { hashPassword } from "../../../plugins/identity/Passwords.ts"
import { ops } from "../../../plugins/ops/index.ts"
import type { AppConfig } from "../../../runtime/Config.ts"
import { baseUrl, testAppLayer } from "../../support/app.ts"
import { testDatabase } from "../../support/database.ts"

export const JWT_SECRET = "identity-test-secret-0123456789abcdefghij"
export const OWNER_EMAIL = "owner@example.com"
export const OWNER_PASSWORD = "owner-password-0123"

export const opsPlugin = ops.make({ retentionDays: 7, pruneSchedule: "17 3 * * *" })

/** The identity plugin with test options (a fixed JWT secret unless `jwtSecret: undefined`). */
export const identityPlugin = (options: Partial<Schema.Schema.Encoded<typeof IdentityOptions>> = {}) =>
  identity.make(Schema.decodeUnknownSync(IdentityOptions)({ jwtSecret: JWT_SECRET, ...options }))

/**
 * The environment the plugin's layer reads its Config from (bootstrap account, data dir, JWT
 * secret): only these variables, so a developer's own TRELLIS_* settings cannot leak in.
 */
export const layerEnv = (env: Record<string, string>) => Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

export interface StartOptions {
  readonly db?: { readonly url: string }
  readonly identity?: Plugin<unknown>
  /** The environment the plugin sees; default: the bootstrap owner OWNER_EMAIL / OWNER_PASSWORD. */
  readonly env?: Record<string, string>
  readonly config?: Partial<AppConfig>
  readonly logger?: Layer.Layer<never>
}

/** An app with ops and identity over HTTP; the bootstrap owner is OWNER_EMAIL / OWNER_PASSWORD. */
export const startApp = (options: StartOptions = {}) =>
  Effect.gen(function* () {
    const db = options.db ?? (yield* testDatabase())
    const layer = testAppLayer({
      databaseUrl: db.url,
      plugins: [opsPlugin, options.identity ?? identityPlugin()],
      http: true,
      ...(options.config ? { config: options.config } : {})
    }).pipe(
      Layer.provide(layerEnv(options.env ?? { TRELLIS_BOOTSTRAP_EMAIL: OWNER_EMAIL, TRELLIS_BOOTSTRAP_PASSWORD: OWNER_PASSWORD })),
      Layer.provide(options.logger ?? Layer.empty)
    )
    const context = yield* Layer.build(layer)
    const sql = yield* Effect.provide(SqlClient.SqlClient, context)
    return { db, context, sql, base: yield* Effect.provide(baseUrl, context) }
  })

export interface Call {
  readonly body?: unknown
  /** An access token (sent as Bearer) or an API key (sent as X-API-Key). */
  readonly token?: string
  readonly apiKey?: string
  readonly headers?: Record<string, string>
}

/** fetch with the given credential only (the support helper always sends the operator key). */
export const call = (base: string, method: string, path: string, options: Call = {}) =>
  Effect.promise(async () => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: {
        ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
        ...(options.apiKey ? { "x-api-key": options.apiKey } : {}),
        ...(options.body === undefined ? {} : { "content-type": "application/json" }),
        ...options.headers
      },
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) })
    })
    const text = await response.text()
    const isJson = response.headers.get("content-type")?.includes("json") ?? false
    // `any`: tests read whatever JSON shape the route under test answers with.
    const json: any = isJson && text !== "" ? JSON.parse(text) : undefined
    return { status: response.status, headers: response.headers, text, json }
  })

export const login = (base: string, email: string, password: string, org?: string) =>
  call(base, "POST", "/api/v1/identity/login", { body: { email, password, ...(org ? { org } : {}) } })

/** Logs in and fails the test unless it worked. */
export const tokensOf = (base: string, email: string, password: string, org?: string) =>
  Effect.flatMap(login(base, email, password, org), (response) =>
    response.status === 200
      ? Effect.succeed(response.json as { accessToken: string; refreshToken: string })
      : Effect.dieMessage(`login of ${email} answered ${response.status}: ${response.text}`)
  )

/** An organisation created directly in the database (there is no route for that). */
export const createOrg = (sql: SqlClient.SqlClient, name: string) =>
  Effect.map(sql<{ id: string }>`insert into identity.orgs (name) values (${name}) returning id`, (rows) => rows[0]!.id)

/** A user with memberships, created directly in the database. */
export const createUser = (
  sql: SqlClient.SqlClient,
  email: string,
  password: string,
  memberships: ReadonlyArray<{ readonly orgId: string; readonly role: Role }>
) =>
  Effect.gen(function* () {
    const hash = yield* hashPassword(Redacted.make(password))
    const [user] = yield* sql<{ id: string }>`
      insert into identity.users (email, password_hash) values (${email}, ${hash}) returning id`
    for (const { orgId, role } of memberships) {
      yield* sql`insert into identity.memberships (org_id, user_id, role) values (${orgId}, ${user!.id}, ${role})`
    }
    return user!.id
  })

export const defaultOrgId = (sql: SqlClient.SqlClient) =>
  Effect.map(sql<{ id: string }>`select id from identity.orgs where name = 'Default'`, (rows) => rows[0]!.id)

/** Everything written to stdout while `effect` runs. */
export const capturingStdout = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const original = process.stdout.write.bind(process.stdout)
      const written: Array<string> = []
      process.stdout.write = ((chunk: string | Uint8Array, ...rest: Array<never>) => {
        written.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString())
        return original(chunk, ...rest)
      }) as typeof process.stdout.write
      return { original, written }
    }),
    ({ written }) => Effect.map(effect, (a) => ({ result: a, stdout: written.join("") })),
    ({ original }) =>
      Effect.sync(() => {
        process.stdout.write = original
      })
  )
