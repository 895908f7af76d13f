import { Context, Data, Deferred, Duration, Effect, Either, Layer, Option, Runtime } from "effect"
import { Redis } from "ioredis"
import { cacheHitsTotal, cacheMissesTotal, labelled } from "./Metrics.ts"

/**
 * A read-through cache: `get(key, load, options)` answers from the cache or runs `load`
 * and stores its result. Production shares entries between processes through Redis
 * (`layerRedis`); development and tests use a bounded in-process LRU (`layerMemory`).
 *
 * Values must be JSON-serialisable, and what a hit returns is the value after a JSON round
 * trip (a `Date` comes back as a string, `undefined` fields disappear). The memory backend
 * stores JSON too, so a value that would not survive Redis fails the same way in
 * development, and callers cannot mutate a cached value through a shared reference.
 */

export interface CacheOptions {
  /** How long an entry is served as fresh; finite. */
  readonly ttl: Duration.DurationInput
  /** Invalidating any of these tags removes the entry (`invalidateTags`). */
  readonly tags?: ReadonlyArray<string>
  /**
   * How long after `ttl` the old value is still served while one background load
   * refreshes it, so callers of a hot key never wait for `load`.
   */
  readonly staleWhileRevalidate?: Duration.DurationInput
}

export interface CacheService {
  readonly backend: "memory" | "redis"
  /**
   * The cached value of `key`, or the result of `load`, which is then cached (failures
   * never are). Concurrent misses of one key in a process share one run of `load`. A key
   * must always be loaded with the same type: a hit returns what an earlier `load` stored.
   * Backend errors never fail the call: it logs them and falls back to `load`.
   */
  get<A, E, R>(key: string, load: Effect.Effect<A, E, R>, options: CacheOptions): Effect.Effect<A, E, R>
  /**
   * Removes every entry stored with any of `tags`; loads running meanwhile do not store
   * their (possibly stale) results. Dies when the backend fails, because carrying on would
   * silently serve stale data.
   */
  invalidateTags(tags: ReadonlyArray<string>): Effect.Effect<void>
  /** Removes one entry. A load of the key already running may still store its result; use tags to rule that out. */
  delete(key: string): Effect.Effect<void>
  /** Readiness: fails when the backend is unreachable. */
  readonly ping: Effect.Effect<void, Error>
}

export class Cache extends Context.Tag("trellis/Cache")<Cache, CacheService>() {}

export class CacheError extends Data.TaggedError("CacheError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

interface Entry {
  readonly value: unknown
  readonly storedAt: number
}

interface Lookup {
  readonly entry: Option.Option<Entry>
  /** The versions of the requested tags now; a store made with them is refused once any changes. */
  readonly versions: ReadonlyArray<string>
}

/** Where and how long to keep a loaded value, fixed when the load starts. */
interface Plan {
  readonly tags: ReadonlyArray<string>
  readonly versions: ReadonlyArray<string>
  /** ttl + staleWhileRevalidate, in milliseconds. */
  readonly px: number
}

interface Write extends Plan {
  readonly key: string
  readonly json: string
  readonly storedAt: number
}

/** What differs between the memory and Redis caches; hits, misses and single-flight are shared. */
interface Backend {
  readonly name: CacheService["backend"]
  lookup(key: string, tags: ReadonlyArray<string>): Effect.Effect<Lookup, CacheError>
  /** Stores unless a tag's version differs from `write.versions`, atomically with that check. */
  store(write: Write): Effect.Effect<void, CacheError>
  invalidate(tags: ReadonlyArray<string>): Effect.Effect<void, CacheError>
  remove(key: string): Effect.Effect<void, CacheError>
  readonly ping: Effect.Effect<void, CacheError>
}

/**
 * How long a tag's version outlives its last invalidation. It only has to outlast the
 * loads that read the previous version; keeping it forever would grow without bound with
 * per-entity tags.
 */
const versionRetentionMillis = 24 * 60 * 60 * 1000

const describe = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

const encode = (value: unknown, storedAt: number) =>
  Effect.try({
    try: () => JSON.stringify({ t: storedAt, v: value }),
    catch: (cause) => new CacheError({ message: `value is not JSON-serialisable: ${describe(cause)}`, cause })
  })

const decode = (json: string): Option.Option<Entry> => {
  try {
    const parsed: unknown = JSON.parse(json)
    if (typeof parsed === "object" && parsed !== null && "t" in parsed && typeof parsed.t === "number") {
      return Option.some({ storedAt: parsed.t, value: "v" in parsed ? parsed.v : undefined })
    }
  } catch {
    // A corrupt entry (written by something else, truncated) reads as a miss and is overwritten.
  }
  return Option.none()
}

interface Flight {
  // Each key's waiters share the type of that key's load; the map holds loads of all keys.
  readonly deferred: Deferred.Deferred<unknown, unknown>
  readonly tags: ReadonlyArray<string>
}

const makeService = (backend: Backend): CacheService => {
  /** The running load of each key, so concurrent misses of a key share it. */
  const flights = new Map<string, Flight>()
  const countHit = labelled(cacheHitsTotal, { backend: backend.name })
  const countMiss = labelled(cacheMissesTotal, { backend: backend.name })

  const save = (key: string, value: unknown, plan: Plan) =>
    Effect.gen(function* () {
      if (plan.px <= 0) return
      // Entries are stamped and aged with the same clock (Date.now, read without an Effect on the hit path).
      const storedAt = Date.now()
      const json = yield* encode(value, storedAt)
      yield* backend.store({ ...plan, key, json, storedAt })
    }).pipe(
      Effect.catchAll((error) =>
        Effect.logWarning("cache write failed; the value is served uncached").pipe(
          Effect.annotateLogs({ key, error: error.message })
        )
      )
    )

  /**
   * Joins the key's running load or starts one. The load runs in a daemon fiber so that
   * interrupting the caller that started it neither interrupts the other waiters' load
   * nor leaves them waiting; a background refresh must outlive its caller anyway.
   */
  const flight = <A, E, R>(key: string, load: Effect.Effect<A, E, R>, plan: Plan, background: boolean) =>
    Effect.fiberIdWith((fiberId) =>
      // Looking up and registering the flight in one synchronous step keeps two fibers
      // from both starting a load.
      Effect.suspend(() => {
        const running = flights.get(key)
        if (running !== undefined) {
          // Same key, so the same load type (see CacheService.get).
          return Effect.succeed(running.deferred as Deferred.Deferred<A, E>)
        }
        const deferred = Deferred.unsafeMake<A, E>(fiberId)
        const own: Flight = { deferred: deferred as Deferred.Deferred<unknown, unknown>, tags: plan.tags }
        flights.set(key, own)
        return load.pipe(
          Effect.tap((value) => save(key, value, plan)),
          Effect.onExit((exit) =>
            Effect.andThen(
              Deferred.done(deferred, exit),
              Effect.sync(() => {
                // An invalidation may have replaced this flight with a newer one.
                if (flights.get(key) === own) flights.delete(key)
              })
            )
          ),
          // Waiters get the failure through the Deferred; a refresh has none to tell.
          Effect.catchAllCause((cause) =>
            background
              ? Effect.logWarning("cache refresh failed; the stale value stays", cause).pipe(
                  Effect.annotateLogs({ key })
                )
              : Effect.void
          ),
          Effect.forkDaemon,
          Effect.as(deferred)
        )
      })
    )

  return {
    backend: backend.name,
    get: <A, E, R>(key: string, load: Effect.Effect<A, E, R>, options: CacheOptions) =>
      // One step after the lookup (a hit is on every authenticated request's path). The
      // continuation is an argument, not a named property: tsx (esbuild keepNames) renames
      // every named function expression with a defineProperty call as it is created.
      Effect.suspend(() => {
        const ttl = Duration.toMillis(options.ttl)
        const swr = options.staleWhileRevalidate === undefined ? 0 : Duration.toMillis(options.staleWhileRevalidate)
        const tags = options.tags ?? []
        return Effect.flatMap(Effect.either(backend.lookup(key, tags)), (found): Effect.Effect<A, E, R> => {
          if (Either.isLeft(found)) {
            countMiss(1)
            return Effect.logWarning("cache read failed; loading without the cache").pipe(
              Effect.annotateLogs({ key, error: found.left.message }),
              Effect.zipRight(load)
            )
          }
          const plan: Plan = { tags, versions: found.right.versions, px: ttl + swr }
          const entry = found.right.entry
          if (Option.isSome(entry)) {
            const age = Date.now() - entry.value.storedAt
            if (age < ttl + swr) {
              countHit(1)
              // The entry holds what a load of this key returned (see CacheService.get).
              const value = entry.value.value as A
              return age >= ttl ? Effect.as(flight(key, load, plan, true), value) : Effect.succeed(value)
            }
          }
          countMiss(1)
          return Effect.flatMap(flight(key, load, plan, false), Deferred.await)
        })
      }),
    invalidateTags: (tags) =>
      Effect.suspend(() => {
        // Later gets must start their own load instead of joining one that read old data.
        for (const [key, running] of flights) {
          if (running.tags.some((tag) => tags.includes(tag))) flights.delete(key)
        }
        return backend.invalidate(tags)
      }).pipe(Effect.orDie),
    delete: (key) => Effect.orDie(backend.remove(key)),
    ping: backend.ping
  }
}

interface MemoryEntry {
  readonly json: string
  readonly expiresAt: number
  readonly tags: ReadonlyArray<string>
}

const memoryBackend = (maxEntries: number): Backend => {
  /** Oldest use first: a read re-inserts its entry, eviction takes from the front. */
  const entries = new Map<string, MemoryEntry>()
  const keysByTag = new Map<string, Set<string>>()
  /** Ordered by last invalidation, so expired versions are pruned from the front. */
  const versions = new Map<string, { readonly version: number; readonly at: number }>()

  const versionsOf = (tags: ReadonlyArray<string>) => tags.map((tag) => String(versions.get(tag)?.version ?? 0))

  const removeEntry = (key: string) => {
    const entry = entries.get(key)
    if (entry === undefined) return
    entries.delete(key)
    for (const tag of entry.tags) {
      const keys = keysByTag.get(tag)
      keys?.delete(key)
      if (keys?.size === 0) keysByTag.delete(tag)
    }
  }

  return {
    name: "memory",
    lookup: (key, tags) =>
      Effect.sync(() => {
        const now = Date.now()
        const entry = entries.get(key)
        let found = Option.none<Entry>()
        if (entry !== undefined && entry.expiresAt > now) {
          entries.delete(key)
          entries.set(key, entry)
          found = decode(entry.json)
        } else if (entry !== undefined) {
          removeEntry(key)
        }
        return { entry: found, versions: versionsOf(tags) }
      }),
    store: (write) =>
      Effect.sync(() => {
        if (versionsOf(write.tags).some((version, i) => version !== write.versions[i])) return
        removeEntry(write.key)
        entries.set(write.key, { json: write.json, expiresAt: write.storedAt + write.px, tags: write.tags })
        for (const tag of write.tags) {
          let keys = keysByTag.get(tag)
          if (keys === undefined) {
            keys = new Set()
            keysByTag.set(tag, keys)
          }
          keys.add(write.key)
        }
        for (const oldest of entries.keys()) {
          if (entries.size <= maxEntries) break
          removeEntry(oldest)
        }
      }),
    invalidate: (tags) =>
      Effect.sync(() => {
        const now = Date.now()
        for (const tag of tags) {
          const version = (versions.get(tag)?.version ?? 0) + 1
          versions.delete(tag)
          versions.set(tag, { version, at: now })
          for (const key of [...(keysByTag.get(tag) ?? [])]) removeEntry(key)
        }
        for (const [tag, { at }] of versions) {
          if (now - at < versionRetentionMillis) break
          versions.delete(tag)
        }
      }),
    remove: (key) => Effect.sync(() => removeEntry(key)),
    ping: Effect.void
  }
}

/**
 * Stores an entry unless one of its tags was invalidated since the load read the versions,
 * and adds it to its tags' sets, which live at least as long as their entries.
 * KEYS: entry, then n tag-version keys, then n tag-set keys. ARGV: json, px, then n versions.
 */
const storeScript = `
local n = (#KEYS - 1) / 2
for i = 1, n do
  if (redis.call("GET", KEYS[1 + i]) or "0") ~= ARGV[2 + i] then return 0 end
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
for i = 1, n do
  local set = KEYS[1 + n + i]
  redis.call("SADD", set, KEYS[1])
  if redis.call("PTTL", set) < tonumber(ARGV[2]) then redis.call("PEXPIRE", set, ARGV[2]) end
end
return 1
`

/**
 * Deletes the entries of each tag and the tag's set, and bumps the tag's version so loads
 * running now do not store. KEYS: n tag-set keys, then n tag-version keys. ARGV: version
 * retention in ms. The entry keys come from the sets, so this assumes a single Redis, not
 * a cluster.
 */
const invalidateScript = `
local n = #KEYS / 2
for i = 1, n do
  local members = redis.call("SMEMBERS", KEYS[i])
  -- unpack has a stack limit, so delete in batches.
  for j = 1, #members, 1000 do
    redis.call("DEL", unpack(members, j, math.min(j + 999, #members)))
  end
  redis.call("DEL", KEYS[i])
  redis.call("INCR", KEYS[n + i])
  redis.call("PEXPIRE", KEYS[n + i], ARGV[1])
end
return 1
`

const redisBackend = (client: Redis, prefix: string): Backend => {
  const entryKey = (key: string) => `${prefix}entry:${key}`
  const tagSetKey = (tag: string) => `${prefix}tag:${tag}`
  const tagVersionKey = (tag: string) => `${prefix}tagv:${tag}`
  const run = <A>(what: string, command: () => Promise<A>) =>
    Effect.tryPromise({
      try: command,
      catch: (cause) => new CacheError({ message: `redis ${what} failed: ${describe(cause)}`, cause })
    })

  return {
    name: "redis",
    lookup: (key, tags) =>
      Effect.map(run("read", () => client.mget(entryKey(key), ...tags.map(tagVersionKey))), ([json, ...versions]) => ({
        entry: json == null ? Option.none() : decode(json),
        versions: versions.map((version) => version ?? "0")
      })),
    store: (write) =>
      Effect.asVoid(
        run("write", () =>
          client.eval(
            storeScript,
            1 + 2 * write.tags.length,
            entryKey(write.key),
            ...write.tags.map(tagVersionKey),
            ...write.tags.map(tagSetKey),
            write.json,
            Math.ceil(write.px),
            ...write.versions
          )
        )
      ),
    invalidate: (tags) =>
      tags.length === 0
        ? Effect.void
        : Effect.asVoid(
            run("invalidate", () =>
              client.eval(
                invalidateScript,
                2 * tags.length,
                ...tags.map(tagSetKey),
                ...tags.map(tagVersionKey),
                versionRetentionMillis
              )
            )
          ),
    remove: (key) => Effect.asVoid(run("delete", () => client.del(entryKey(key)))),
    ping: Effect.asVoid(run("ping", () => client.ping()))
  }
}

/** An in-process LRU cache of at most `maxEntries` (default 10,000) entries. */
export const layerMemory = (options?: { readonly maxEntries?: number }): Layer.Layer<Cache> =>
  Layer.sync(Cache, () => makeService(memoryBackend(options?.maxEntries ?? 10_000)))

/** A cache in Redis at `url`, shared by every process using the same `keyPrefix` (default `trellis:cache:`). */
export const layerRedis = (options: { readonly url: string; readonly keyPrefix?: string }): Layer.Layer<Cache> =>
  Layer.scoped(
    Cache,
    Effect.gen(function* () {
      const runtime = yield* Effect.runtime<never>()
      const client = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const client = new Redis(options.url, { lazyConnect: false, maxRetriesPerRequest: 2 })
          // Without a listener ioredis prints every reconnect failure to stderr itself.
          client.on("error", (error: Error) =>
            Runtime.runFork(runtime)(
              Effect.logWarning("redis cache connection error").pipe(Effect.annotateLogs({ error: error.message }))
            )
          )
          return client
        }),
        (client) => Effect.tryPromise(() => client.quit()).pipe(Effect.orElse(() => Effect.sync(() => client.disconnect())))
      )
      return makeService(redisBackend(client, options.keyPrefix ?? "trellis:cache:"))
    })
  )
