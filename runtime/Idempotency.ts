import { HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Option } from "effect"
import { createHash } from "node:crypto"

const sha256 = (value: string) => createHash("sha256").update(value).digest("hex")

const json = (status: number, body: unknown) => HttpServerResponse.unsafeJson(body, { status })

/** Responses worth replaying: not auth failures, rate limits or server errors, which a retry may fix. */
const storable = (status: number) => status < 500 && status !== 401 && status !== 403 && status !== 429

const KEPT_HEADERS = ["content-type", "location", "etag"] as const

const WAIT_FOR_FIRST_MS = 10_000

interface StoredRow {
  request_hash: string
  status: "in_progress" | "completed"
  response_status: number | null
  response_headers: Record<string, string> | null
  response_body: string | null
}

/**
 * `Idempotency-Key` on POST: the first response for a (credential, key) is stored for 24 h
 * and replayed for a retry with the same body; the same key with another body is a 422; a
 * retry arriving while the first is still running waits for it (then replays) or gets a 409,
 * never a second write. Keys are scoped by a hash of the credential presented, so one caller
 * can never read another's stored response; requests without a credential are not handled.
 */
export const withIdempotency = <E, R>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
): Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  E | HttpServerError.RequestError | SqlError,
  R | HttpServerRequest.HttpServerRequest | SqlClient.SqlClient
> =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const key = request.headers["idempotency-key"]
    const credential = request.headers["x-api-key"] ?? request.headers["authorization"]
    // Anonymous routes (login, token refresh) answer with fresh secrets: never stored, never replayed.
    if (request.method !== "POST" || key === undefined || credential === undefined) return yield* app
    if (key.length === 0 || key.length > 255) {
      return json(400, { _tag: "BadRequest", message: "Idempotency-Key must be 1 to 255 characters", field: "Idempotency-Key" })
    }
    const sql = yield* SqlClient.SqlClient
    const scope = sha256(`${credential}\n${Option.getOrElse(request.remoteAddress, () => "")}`)
    // The body is read once here; the platform caches it for the handler.
    const body = yield* request.text
    const requestHash = sha256(`${request.method} ${request.url}\n${body}`)

    const claimed = yield* sql<{ claimed: boolean }>`
      insert into core.idempotency_keys (scope, key, request_hash, status, expires_at)
      values (${scope}, ${key}, ${requestHash}, 'in_progress', now() + interval '24 hours')
      on conflict (scope, key) do update
        set request_hash = excluded.request_hash, status = 'in_progress', response_status = null,
            response_headers = null, response_body = null, created_at = now(), expires_at = excluded.expires_at
        where core.idempotency_keys.expires_at < now()
      returning true as claimed`
    if (claimed.length === 0) return yield* replay(sql, scope, key, requestHash)

    const response = yield* app.pipe(
      Effect.onError(() => sql`delete from core.idempotency_keys where scope = ${scope} and key = ${key}`.pipe(Effect.ignore))
    )
    const text = bodyText(response)
    if (!storable(response.status) || text === undefined || /no-store/i.test(response.headers["cache-control"] ?? "")) {
      yield* sql`delete from core.idempotency_keys where scope = ${scope} and key = ${key}`
      return response
    }
    const headers = Object.fromEntries(
      KEPT_HEADERS.flatMap((h) => {
        const value = h === "content-type" ? contentType(response) : response.headers[h]
        return value === undefined ? [] : [[h, value]]
      })
    )
    yield* sql`
      update core.idempotency_keys
         set status = 'completed', response_status = ${response.status},
             response_headers = ${JSON.stringify(headers)}::jsonb, response_body = ${text}
       where scope = ${scope} and key = ${key}`
    return response
  })

const replay = (sql: SqlClient.SqlClient, scope: string, key: string, requestHash: string) =>
  Effect.gen(function* () {
    const deadline = Date.now() + WAIT_FOR_FIRST_MS
    while (true) {
      const [row] = yield* sql<StoredRow>`
        select request_hash, status, response_status, response_headers, response_body
          from core.idempotency_keys where scope = ${scope} and key = ${key}`
      if (row === undefined) {
        // The first request failed in a way not worth storing and released the key.
        return json(409, { _tag: "Conflict", message: "the first request with this Idempotency-Key failed; retry it" })
      }
      if (row.request_hash !== requestHash) {
        return json(422, {
          _tag: "UnprocessableEntity",
          message: "this Idempotency-Key was used with a different request body"
        })
      }
      if (row.status === "completed") {
        return HttpServerResponse.text(row.response_body ?? "", {
          status: row.response_status ?? 200,
          headers: { ...(row.response_headers ?? {}), "idempotent-replayed": "true" },
          contentType: row.response_headers?.["content-type"] ?? "application/json"
        })
      }
      if (Date.now() > deadline) {
        return json(409, { _tag: "Conflict", message: "a request with this Idempotency-Key is still being processed" })
      }
      yield* Effect.sleep(50)
    }
  })

const decoder = new TextDecoder()

const bodyText = (response: HttpServerResponse.HttpServerResponse): string | undefined => {
  switch (response.body._tag) {
    case "Empty":
      return ""
    case "Uint8Array":
      return decoder.decode(response.body.body)
    case "Raw":
      return typeof response.body.body === "string" ? response.body.body : undefined
    default:
      return undefined
  }
}

const contentType = (response: HttpServerResponse.HttpServerResponse) =>
  response.body._tag === "Empty" ? undefined : (response.body.contentType ?? response.headers["content-type"])
