import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { encodedJson, encodesAsItself } from "../../core/Responses.ts"
import { OrderPage } from "../../plugins/orders/Domain.ts"
import { ItemPage } from "../../plugins/inventory/Domain.ts"

class Point extends Schema.Class<Point>("Point")({ x: Schema.Number }) {}

const page = {
  items: [
    {
      id: "0b7c4a52-51f4-4a47-9a41-0a6f1d1f0001",
      channel: "website",
      externalId: "w-1",
      status: "PLACED" as const,
      customer: { name: "Ada", phone: "+44 20 7946 0000", email: null },
      currency: "GBP",
      total: 1999,
      itemCount: 1,
      createdAt: "2026-12-02T10:00:00.000Z",
      updatedAt: "2026-12-02T10:00:00.000Z"
    }
  ],
  nextCursor: null
}

describe("encodedJson", () => {
  it("knows which schemas encode a value as itself", () => {
    expect(encodesAsItself(OrderPage.ast)).toBe(true)
    expect(encodesAsItself(ItemPage.ast)).toBe(true)
    expect(encodesAsItself(Schema.Struct({ n: Schema.Int, tags: Schema.Array(Schema.Literal("a", "b")), note: Schema.NullOr(Schema.String) }).ast)).toBe(true)
    expect(encodesAsItself(Schema.Record({ key: Schema.String, value: Schema.Number }).ast)).toBe(true)
    expect(encodesAsItself(Schema.Struct({ at: Schema.DateTimeUtc }).ast)).toBe(false)
    expect(encodesAsItself(Schema.Struct({ n: Schema.NumberFromString }).ast)).toBe(false)
    expect(encodesAsItself(Schema.Struct({ n: Schema.optionalWith(Schema.Number, { default: () => 1 }) }).ast)).toBe(false)
    expect(encodesAsItself(Schema.Array(Schema.Union(Schema.String, Schema.Option(Schema.String))).ast)).toBe(false)
    expect(encodesAsItself(Point.ast)).toBe(false)
  })

  it("answers 200 with the JSON HttpApi's encoding would have sent, and refuses a schema whose encoding changes values", async () => {
    const response = encodedJson(OrderPage)(page)
    expect(response.status).toBe(200)
    expect(response.body._tag).toBe("Uint8Array")
    const body = response.body._tag === "Uint8Array" ? new TextDecoder().decode(response.body.body) : ""
    expect(response.body._tag === "Uint8Array" && response.body.contentType).toBe("application/json")
    expect(JSON.parse(body)).toEqual(Schema.encodeSync(OrderPage)(page))
    expect(body).toBe(JSON.stringify(Schema.encodeSync(OrderPage)(page)))
    const Timed = Schema.Struct({ at: Schema.DateTimeUtc })
    // @ts-expect-error: a schema whose type differs from its encoding is refused by the types too
    expect(() => encodedJson(Timed)).toThrow(/changes values/)
    expect(() => encodedJson(Schema.Struct({ n: Schema.optionalWith(Schema.Number, { default: () => 1 }) }) as Schema.Schema<{ readonly n: number }>)).toThrow(
      /changes values/
    )
  })
})
