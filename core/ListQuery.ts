import { Either, Schema } from "effect"
import { BadRequest } from "./Errors.ts"

/**
 * Keyset cursors: the sort they belong to, the last row's sort key (as PostgreSQL prints it,
 * so timestamps keep their microseconds) and its tie-breaker. Opaque to clients.
 */
const CursorJson = Schema.parseJson(Schema.Tuple(Schema.String, Schema.String, Schema.String))

export interface Cursor {
  readonly key: string
  readonly tieBreaker: string
}

/** What a sort key of each SQL type looks like, so a tampered cursor is a 400 and not an SQL error. */
const KEY_PATTERNS: Readonly<Record<string, RegExp>> = {
  text: /^[\s\S]*$/,
  int: /^-?\d{1,10}$/,
  bigint: /^-?\d{1,19}$/,
  timestamptz: /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}(:\d{2})?$/,
  uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
}

export const encodeCursor = (sort: string, key: string, tieBreaker: string) =>
  Buffer.from(JSON.stringify([sort, key, tieBreaker])).toString("base64url")

export const decodeCursor = (
  cursor: string,
  sort: string,
  types: { readonly key: string; readonly tieBreaker: string }
): Either.Either<Cursor, BadRequest> => {
  const invalid = (message: string) => Either.left(new BadRequest({ message, field: "cursor" }))
  const decoded = Schema.decodeUnknownEither(CursorJson)(Buffer.from(cursor, "base64url").toString("utf8"))
  if (Either.isLeft(decoded)) return invalid("cursor is not one this API returned")
  const [cursorSort, key, tieBreaker] = decoded.right
  if (cursorSort !== sort) return invalid(`cursor belongs to sort ${cursorSort}, not ${sort}`)
  if (!KEY_PATTERNS[types.key]!.test(key) || !KEY_PATTERNS[types.tieBreaker]!.test(tieBreaker)) {
    return invalid("cursor is not one this API returned")
  }
  return Either.right({ key, tieBreaker })
}

/** At most this many words of a search are matched; the rest are ignored. */
const MAX_SEARCH_WORDS = 8

/**
 * The distinct lower-cased words of `texts`, split at anything but letters and digits: what
 * free-text search stores (and how it splits a query, so both sides agree).
 */
export const searchWords = (...texts: ReadonlyArray<string>) => [
  ...new Set(texts.flatMap((text) => text.toLowerCase().split(/[^\p{L}\p{N}]+/u)).filter((word) => word.length > 0))
]

/** The end of the range of terms starting with `word`: no character sorts after U+10FFFF. */
export const prefixEnd = (word: string) => `${word}\u{10FFFF}`

/**
 * The words a list's `q` must match, each the start of a stored word; `nothing` for a search
 * without letters or digits, which has nothing to match and so finds nothing.
 */
export const queryWords = (q: string | undefined): ReadonlyArray<string> | "nothing" => {
  if (q === undefined) return []
  const words = searchWords(q).slice(0, MAX_SEARCH_WORDS)
  return words.length === 0 ? "nothing" : words
}
