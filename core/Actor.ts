import { Context, type Option } from "effect"

export interface Actor {
  readonly kind: "operator" | "user" | "api_key"
  readonly id: string
  /** The organisation the actor acts for; the operator has none. */
  readonly orgId: Option.Option<string>
  readonly roles: ReadonlyArray<string>
  /** Granted permissions; `*` grants every permission. */
  readonly permissions: ReadonlyArray<string>
}

/** The authenticated caller of the current request. */
export class CurrentActor extends Context.Tag("trellis/CurrentActor")<CurrentActor, Actor>() {}
