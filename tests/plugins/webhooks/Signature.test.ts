import { describe, expect, it } from "@effect/vitest"
import { Webhook, WebhookVerificationError } from "standardwebhooks"
import { generateSecret, headers, sign } from "../../../plugins/webhooks/Signature.ts"

const nowSeconds = () => Math.floor(Date.now() / 1000)
const body = JSON.stringify({ type: "order.created", timestamp: "2025-01-01T00:00:00.000Z", data: { id: "o_1", note: "ünïcödé ✓" } })

describe("webhook signatures", () => {
  it("generates whsec_ secrets of 32 random bytes", () => {
    const secret = generateSecret()
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/)
    expect(Buffer.from(secret.slice("whsec_".length), "base64")).toHaveLength(32)
    expect(generateSecret()).not.toBe(secret)
  })

  it("matches the published Standard Webhooks example", () => {
    const signature = sign({
      msgId: "msg_p5jXN8AQM9LWM0D4loKWxJek",
      timestamp: 1614265330,
      body: '{"test": 2432232314}',
      secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    })
    expect(signature).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
  })

  it("produces headers the standardwebhooks library verifies", () => {
    const secret = generateSecret()
    const signed = headers({ msgId: "msg_1", timestamp: nowSeconds(), body, secrets: [secret] })
    expect(Object.keys(signed).sort()).toEqual(["webhook-id", "webhook-signature", "webhook-timestamp"])
    expect(signed["webhook-id"]).toBe("msg_1")
    expect(new Webhook(secret).verify(body, signed)).toEqual(JSON.parse(body))
  })

  it("signs with every secret during a rotation, each verifying with its own secret", () => {
    const [oldSecret, newSecret] = [generateSecret(), generateSecret()]
    const timestamp = nowSeconds()
    const signed = headers({ msgId: "msg_2", timestamp, body, secrets: [oldSecret, newSecret] })
    const parts = signed["webhook-signature"].split(" ")
    expect(parts).toEqual([
      sign({ msgId: "msg_2", timestamp, body, secrets: [oldSecret] }),
      sign({ msgId: "msg_2", timestamp, body, secrets: [newSecret] })
    ])
    expect(parts[0]).not.toBe(parts[1])
    for (const [secret, part] of [[oldSecret, parts[0]!], [newSecret, parts[1]!]] as const) {
      expect(new Webhook(secret).verify(body, signed)).toEqual(JSON.parse(body))
      // Only its own signature is sent here, so this proves which part belongs to which secret.
      expect(new Webhook(secret).verify(body, { ...signed, "webhook-signature": part })).toEqual(JSON.parse(body))
    }
    expect(() => new Webhook(newSecret).verify(body, { ...signed, "webhook-signature": parts[0]! })).toThrow(WebhookVerificationError)
    expect(() => new Webhook(generateSecret()).verify(body, signed)).toThrow(WebhookVerificationError)
  })

  it("fails verification when the body, timestamp or id is tampered with", () => {
    const secret = generateSecret()
    const timestamp = nowSeconds()
    const signed = headers({ msgId: "msg_3", timestamp, body, secrets: [secret] })
    const verifier = new Webhook(secret)
    expect(() => verifier.verify(body.replace("o_1", "o_2"), signed)).toThrow(WebhookVerificationError)
    expect(() => verifier.verify(body, { ...signed, "webhook-timestamp": String(timestamp - 1) })).toThrow(WebhookVerificationError)
    expect(() => verifier.verify(body, { ...signed, "webhook-id": "msg_4" })).toThrow(WebhookVerificationError)
    expect(verifier.verify(body, signed)).toEqual(JSON.parse(body))
  })

  it("refuses secrets that are not 24-64 bytes of base64, and fractional timestamps", () => {
    const input = { msgId: "m", timestamp: 1, body: "{}" }
    expect(() => sign({ ...input, secrets: ["whsec_not base64!"] })).toThrow(/whsec_/)
    expect(() => sign({ ...input, secrets: [`whsec_${Buffer.alloc(16).toString("base64")}`] })).toThrow(/whsec_/)
    expect(() => sign({ ...input, secrets: [`whsec_${Buffer.alloc(65).toString("base64")}`] })).toThrow(/whsec_/)
    expect(() => sign({ ...input, secrets: [] })).toThrow(/at least one/)
    expect(() => sign({ ...input, timestamp: 1.5, secrets: [generateSecret()] })).toThrow(/whole/)
  })
})
