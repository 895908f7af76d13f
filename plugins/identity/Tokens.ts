import { Config, Effect, Option, Redacted, Schema } from "effect"
import { jwtVerify, SignJWT } from "jose"
import { createHash, createHmac, randomBytes, randomUUID } from "node:crypto"
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { Options } from "./Domain.ts"

const ISSUER = "trellis"

export class JwtSecretError extends Schema.TaggedError<JwtSecretError>()("JwtSecretError", { message: Schema.String }) {}

const MIN_SECRET_LENGTH = 32

const envSecret = Config.redacted("TRELLIS_JWT_SECRET").pipe(
  Config.validate({
    message: `TRELLIS_JWT_SECRET must be at least ${MIN_SECRET_LENGTH} characters`,
    validation: (value) => Redacted.value(value).length >= MIN_SECRET_LENGTH
  }),
  Config.option
)

/**
 * A key generated once into `<data dir>/jwt-secret` (mode 600), so a restart keeps issued
 * tokens valid. Only one machine can read it: several instances must share TRELLIS_JWT_SECRET.
 */
const generatedSecret = Effect.gen(function* () {
  const dir = resolve(yield* Config.string("TRELLIS_DATA_DIR").pipe(Config.withDefault(".data")))
  const file = join(dir, "jwt-secret")
  const secret = yield* Effect.tryPromise({
    try: async () => {
      await mkdir(dir, { recursive: true })
      // `wx`: when two processes start at once, the second keeps the first one's key.
      await writeFile(file, `${randomBytes(48).toString("base64url")}\n`, { mode: 0o600, flag: "wx" }).catch(
        (error: NodeJS.ErrnoException) => {
          if (error.code !== "EEXIST") throw error
        }
      )
      await chmod(file, 0o600)
      return (await readFile(file, "utf8")).trim()
    },
    catch: (error) => new JwtSecretError({ message: `cannot read or create ${file}: ${String(error)}` })
  })
  if (secret.length < MIN_SECRET_LENGTH) {
    return yield* new JwtSecretError({ message: `${file} must hold at least ${MIN_SECRET_LENGTH} characters` })
  }
  return Redacted.make(secret)
})

const AccessClaims = Schema.Struct({
  sub: Schema.UUID,
  org: Schema.UUID,
  jti: Schema.String,
  roles: Schema.Array(Schema.String),
  /** Seconds since the epoch (jose has checked it is in the future). */
  exp: Schema.Number
})

export interface AccessClaims {
  readonly userId: string
  readonly orgId: string
  readonly roles: ReadonlyArray<string>
}

const sha256 = (value: string) => createHash("sha256").update(value).digest()

/** 32 random bytes, base64url: refresh tokens and API key secrets. */
export const newOpaqueSecret = () => randomBytes(32).toString("base64url")

/** What is stored of an opaque secret: high-entropy secrets need no slow hash. */
export const hashSecret = sha256

const API_KEY = /^trl_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})_([A-Za-z0-9_-]{43})$/

export const formatApiKey = (id: string, secret: string) => `trl_${id}_${secret}`

/** `trl_<key id>_<secret>`; anything else is not one of ours. */
export const parseApiKey = (value: string) => {
  const match = API_KEY.exec(value)
  return match ? Option.some({ id: match[1]!, secret: match[2]! }) : Option.none()
}

/** Verified access tokens remembered per process (see `verifyAccessToken`). */
const MAX_VERIFIED = 10_000

/** Access tokens (HS256 JWTs) and the keyed hashes derived from the same secret. */
export class Tokens extends Effect.Service<Tokens>()("identity/Tokens", {
  effect: Effect.gen(function* () {
    const options = yield* Options
    const fromEnv = yield* envSecret
    const secret = Option.isSome(fromEnv) ? fromEnv.value : (options.jwtSecret ?? (yield* generatedSecret))
    const key = new TextEncoder().encode(Redacted.value(secret))
    const ttl = options.accessTokenTtlSeconds

    const issueAccessToken = (claims: AccessClaims) =>
      Effect.promise(() => {
        const now = Math.floor(Date.now() / 1000)
        return new SignJWT({ org: claims.orgId, roles: claims.roles })
          .setProtectedHeader({ alg: "HS256", typ: "JWT" })
          .setSubject(claims.userId)
          .setJti(randomUUID())
          .setIssuer(ISSUER)
          .setIssuedAt(now)
          .setExpirationTime(now + ttl)
          .sign(key)
      })

    /**
     * Tokens this process verified, by their exact text, with their expiry: a token's signature
     * and claims never change, so checking one again is only its expiry (jose's verification
     * costs ~90 µs per request here). A forged or altered token is another string and is
     * verified in full. Bounded: the oldest entries make room.
     */
    const verified = new Map<string, { readonly claims: AccessClaims; readonly expiresAtMs: number }>()

    /** None for anything but an unexpired HS256 token signed with our key and well-formed claims. */
    const verifyAccessToken = (token: string): Effect.Effect<Option.Option<AccessClaims>> =>
      Effect.suspend(() => {
        const known = verified.get(token)
        if (known !== undefined) {
          if (known.expiresAtMs > Date.now()) return Effect.succeed(Option.some(known.claims))
          verified.delete(token)
          return Effect.succeed(Option.none())
        }
        return Effect.tryPromise(() =>
          jwtVerify(token, key, { algorithms: ["HS256"], issuer: ISSUER, requiredClaims: ["sub", "jti", "iat", "exp"] })
        ).pipe(
          Effect.flatMap(({ payload }) => Schema.decodeUnknown(AccessClaims)(payload)),
          Effect.map((decoded) => {
            const claims: AccessClaims = { userId: decoded.sub, orgId: decoded.org, roles: decoded.roles }
            if (verified.size >= MAX_VERIFIED) verified.delete(verified.keys().next().value!)
            verified.set(token, { claims, expiresAtMs: decoded.exp * 1000 })
            return Option.some(claims)
          }),
          Effect.orElseSucceed(() => Option.none())
        )
      })

    /**
     * Names an account in lockout counters and audit entries without storing the email
     * (keyed, so the audit log cannot be matched against a list of addresses).
     */
    const emailKey = (email: string) => createHmac("sha256", key).update(`email:${email.toLowerCase()}`).digest("hex")

    return { issueAccessToken, verifyAccessToken, emailKey, accessTokenTtlSeconds: ttl } as const
  })
}) {}
