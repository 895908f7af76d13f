import { createHmac, randomBytes } from "node:crypto"

/**
 * Standard Webhooks signing (standard-webhooks/standard-webhooks): the receiver verifies
 * `v1,<base64 HMAC-SHA256("${id}.${timestamp}.${body}")>` with the shared secret.
 */

const prefix = "whsec_"
const base64 = /^[A-Za-z0-9+/]+={0,2}$/

export const generateSecret = (): string => prefix + randomBytes(32).toString("base64")

/**
 * The HMAC key is the decoded secret. Buffer's base64 decoder silently skips junk, so a
 * mangled secret would otherwise sign with a different (possibly empty) key and every
 * delivery would fail verification with no hint why; the spec's 24-64 bytes bound it.
 */
const secretKey = (secret: string): Buffer => {
  const encoded = secret.startsWith(prefix) ? secret.slice(prefix.length) : secret
  const key = Buffer.from(encoded, "base64")
  if (!base64.test(encoded) || key.length < 24 || key.length > 64) {
    throw new Error("a webhook secret is whsec_ followed by base64 of 24 to 64 bytes")
  }
  return key
}

export interface SignInput {
  /** The message id: stable across retries, the receiver's idempotency key. */
  readonly msgId: string
  /** Unix seconds of this attempt (an integer: receivers parse it as one). */
  readonly timestamp: number
  /** The exact bytes sent, as a string: re-serialising JSON would change the signature. */
  readonly body: string
  /** More than one during a rotation, so receivers holding either secret accept the message. */
  readonly secrets: ReadonlyArray<string>
}

export type SignatureHeaders = Record<"webhook-id" | "webhook-timestamp" | "webhook-signature", string>

/**
 * Signs with `secrets`, their keys decoded once: a batch of messages to one endpoint shares
 * them. Throws at once on a bad secret.
 */
export const signer = (secrets: ReadonlyArray<string>) => {
  if (secrets.length === 0) throw new Error("at least one webhook secret is needed to sign")
  const keys = secrets.map(secretKey)
  const sign = (msgId: string, timestamp: number, body: string): string => {
    if (!Number.isInteger(timestamp)) throw new Error("the webhook timestamp is whole Unix seconds")
    const content = `${msgId}.${timestamp}.${body}`
    return keys.map((key) => `v1,${createHmac("sha256", key).update(content, "utf8").digest("base64")}`).join(" ")
  }
  return {
    sign,
    headers: (msgId: string, timestamp: number, body: string): SignatureHeaders => ({
      "webhook-id": msgId,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": sign(msgId, timestamp, body)
    })
  } as const
}

/** The `webhook-signature` header value. */
export const sign = ({ msgId, timestamp, body, secrets }: SignInput): string => signer(secrets).sign(msgId, timestamp, body)

export const headers = (input: SignInput): SignatureHeaders => signer(input.secrets).headers(input.msgId, input.timestamp, input.body)
