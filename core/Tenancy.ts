import { Context, Option } from "effect"

/**
 * The organisation the current work belongs to. Requests set it from the authenticated
 * actor; jobs set it from their envelope, so work a request enqueues runs for the same org.
 */
export class CurrentTenant extends Context.Reference<CurrentTenant>()("trellis/CurrentTenant", {
  defaultValue: (): Option.Option<string> => Option.none()
}) {}
