import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { ADMIN_KEY } from "./app.ts"

export interface TestTenant {
  readonly orgId: string
  /** An API key of the org holding the requested permissions. */
  readonly apiKey: string
  readonly headers: { readonly "x-api-key": string }
  /** The org's owner, for tests that log in. */
  readonly owner: { readonly email: string; readonly password: string }
}

const call = (base: string, method: string, path: string, headers: Record<string, string>, body?: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await response.text()
    if (!response.ok) throw new Error(`createTenant: ${method} ${path} answered ${response.status}: ${text}`)
    // `any`: the identity routes' JSON, read field by field below.
    return JSON.parse(text) as any
  })

/**
 * Creates an organisation and an API key of it (default: every registered permission)
 * through the identity plugin's routes on the test server at `base`: the operator key creates
 * the org and its owner, the owner logs in and creates the key.
 */
export const createTenant = (base: string, options: { readonly permissions?: ReadonlyArray<string> } = {}) =>
  Effect.gen(function* () {
    const suffix = randomBytes(6).toString("hex")
    const owner = { email: `owner-${suffix}@example.test`, password: `owner-password-${suffix}` }
    const org = yield* call(base, "POST", "/api/v1/identity/orgs", { "x-api-key": ADMIN_KEY }, { name: `org ${suffix}`, owner })
    const session = yield* call(base, "POST", "/api/v1/identity/login", {}, { ...owner, org: org.id })
    const bearer = { authorization: `Bearer ${session.accessToken}` }
    const permissions = options.permissions ?? (yield* call(base, "GET", "/api/v1/identity/me", bearer)).permissions
    const key = yield* call(base, "POST", "/api/v1/identity/api-keys", bearer, { name: `test ${suffix}`, permissions })
    const tenant: TestTenant = { orgId: org.id, apiKey: key.key, headers: { "x-api-key": key.key }, owner }
    return tenant
  })
