import { Effect, Redacted } from "effect"
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto"

/**
 * scrypt with N = 2^15, r = 8, p = 1 (32 MiB, roughly 50-100 ms a hash): the parameters are
 * stored with each hash, so raising them later only affects new hashes.
 */
const LOG2_N = 15
const R = 8
const P = 1
const KEY_LENGTH = 32
const SALT_LENGTH = 16

const derive = (password: string, salt: Buffer, log2N: number, r: number, p: number, length: number) =>
  Effect.async<Buffer>((resume) => {
    const N = 2 ** log2N
    // scrypt needs 128 * N * r bytes; node's default cap (32 MiB) is exactly that, leave headroom.
    const options: ScryptOptions = { N, r, p, maxmem: 256 * N * r }
    scrypt(password.normalize("NFKC"), salt, length, options, (error, key) =>
      resume(error ? Effect.die(error) : Effect.succeed(key))
    )
  })

/** `scrypt$<log2 N>$<r>$<p>$<salt>$<hash>` with a fresh random salt. */
export const hashPassword = (password: Redacted.Redacted<string>) =>
  Effect.gen(function* () {
    const salt = randomBytes(SALT_LENGTH)
    const hash = yield* derive(Redacted.value(password), salt, LOG2_N, R, P, KEY_LENGTH)
    return `scrypt$${LOG2_N}$${R}$${P}$${salt.toString("base64url")}$${hash.toString("base64url")}`
  })

const STORED = /^scrypt\$(1[0-9]|20)\$([1-9][0-9]?)\$([1-9])\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]{16,})$/

/** Compares in constant time; a malformed stored hash never matches. */
export const verifyPassword = (password: Redacted.Redacted<string>, stored: string) =>
  Effect.gen(function* () {
    const match = STORED.exec(stored)
    if (!match) return false
    const [, log2N, r, p, salt, hash] = match
    const expected = Buffer.from(hash!, "base64url")
    const actual = yield* derive(Redacted.value(password), Buffer.from(salt!, "base64url"), Number(log2N), Number(r), Number(p), expected.length)
    return timingSafeEqual(actual, expected)
  })

/**
 * A hash of a random password, verified against when the email is unknown so that an unknown
 * account costs the same scrypt work as a wrong password.
 */
export const makeDummyHash = hashPassword(Redacted.make(randomBytes(24).toString("base64url")))
