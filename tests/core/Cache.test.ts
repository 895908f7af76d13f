import { afterAll, describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Either, Fiber, Layer, Logger, LogLevel, Metric } from "effect"
import { Redis } from "ioredis"
import { Cache, layerMemory, layerRedis } from "../../core/Cache.ts"
import { cacheHitsTotal, cacheMissesTotal } from "../../core/Metrics.ts"

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"
const keyPrefix = `test:${process.pid}:${Date.now()}:`

/** A load that counts its runs and returns `v<run>`, so a test sees which run it got. */
const loader = (delay: Duration.DurationInput = 0) => {
  const state = { calls: 0, finished: 0 }
  const load = Effect.suspend(() => {
    const run = ++state.calls
    return Effect.sleep(delay).pipe(
      Effect.map(() => {
        state.finished++
        return `v${run}`
      })
    )
  })
  return { state, load }
}

const counterValue = (counter: typeof cacheHitsTotal, backend: string) =>
  Effect.map(Metric.value(Metric.tagged(counter, "backend", backend)), (state) => Number(state.count))

const cacheSuite = (name: string, layer: Layer.Layer<Cache>) =>
  describe(`Cache (${name})`, () => {
    const test = <E>(title: string, body: Effect.Effect<void, E, Cache>) =>
      it.live(title, () => Effect.provide(body, layer))

    test(
      "a miss loads and stores, the next get hits",
      Effect.gen(function* () {
        const cache = yield* Cache
        const { state, load } = loader()
        expect(yield* cache.get("hit", load, { ttl: "1 minute" })).toBe("v1")
        expect(yield* cache.get("hit", load, { ttl: "1 minute" })).toBe("v1")
        expect(state.calls).toBe(1)
      })
    )

    test(
      "an entry older than its ttl is a miss",
      Effect.gen(function* () {
        const cache = yield* Cache
        const { state, load } = loader()
        expect(yield* cache.get("ttl", load, { ttl: "60 millis" })).toBe("v1")
        expect(yield* cache.get("ttl", load, { ttl: "60 millis" })).toBe("v1")
        yield* Effect.sleep("150 millis")
        expect(yield* cache.get("ttl", load, { ttl: "60 millis" })).toBe("v2")
        expect(state.calls).toBe(2)
      })
    )

    test(
      "1,000 concurrent misses of a key run the load once",
      Effect.gen(function* () {
        const cache = yield* Cache
        const { state, load } = loader("50 millis")
        const results = yield* Effect.all(
          Array.from({ length: 1000 }, () => cache.get("flight", load, { ttl: "1 minute" })),
          { concurrency: "unbounded" }
        )
        expect(state.calls).toBe(1)
        expect(results).toHaveLength(1000)
        expect(results.every((value) => value === "v1")).toBe(true)
      })
    )

    test(
      "a failing load fails every concurrent waiter and is not cached",
      Effect.gen(function* () {
        const cache = yield* Cache
        let calls = 0
        const failing = Effect.suspend(() => {
          calls++
          return Effect.zipRight(Effect.sleep("50 millis"), Effect.fail(new Error("boom")))
        })
        const results = yield* Effect.all(
          Array.from({ length: 100 }, () => Effect.either(cache.get("failing", failing, { ttl: "1 minute" }))),
          { concurrency: "unbounded" }
        )
        expect(calls).toBe(1)
        expect(results.every((result) => Either.isLeft(result) && result.left.message === "boom")).toBe(true)
        const { state, load } = loader()
        expect(yield* cache.get("failing", load, { ttl: "1 minute" })).toBe("v1")
        expect(state.calls).toBe(1)
      })
    )

    test(
      "interrupting the caller that started a load does not strand the other waiters",
      Effect.gen(function* () {
        const cache = yield* Cache
        const { state, load } = loader("100 millis")
        const first = yield* Effect.fork(cache.get("interrupt", load, { ttl: "1 minute" }))
        yield* Effect.sleep("20 millis")
        const second = yield* Effect.fork(cache.get("interrupt", load, { ttl: "1 minute" }))
        yield* Effect.sleep("20 millis")
        yield* Fiber.interrupt(first)
        expect(yield* Fiber.join(second).pipe(Effect.timeout("2 seconds"))).toBe("v1")
        expect(state.calls).toBe(1)
      })
    )

    test(
      "invalidating a tag removes its entries and no others",
      Effect.gen(function* () {
        const cache = yield* Cache
        const a = loader()
        const b = loader()
        const c = loader()
        const getAll = Effect.all([
          cache.get("tags:a", a.load, { ttl: "1 minute", tags: ["tags:t"] }),
          cache.get("tags:b", b.load, { ttl: "1 minute", tags: ["tags:t", "tags:other"] }),
          cache.get("tags:c", c.load, { ttl: "1 minute", tags: ["tags:u"] })
        ])
        expect(yield* getAll).toEqual(["v1", "v1", "v1"])
        yield* cache.invalidateTags(["tags:t"])
        expect(yield* getAll).toEqual(["v2", "v2", "v1"])
        expect([a.state.calls, b.state.calls, c.state.calls]).toEqual([2, 2, 1])
      })
    )

    test(
      "a load whose tag is invalidated while it runs does not store its result",
      Effect.gen(function* () {
        const cache = yield* Cache
        const started = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const slow = Deferred.succeed(started, undefined).pipe(
          Effect.zipRight(Deferred.await(release)),
          Effect.as("stale")
        )
        const options = { ttl: "1 minute", tags: ["race:t"] } as const
        const running = yield* Effect.fork(cache.get("race", slow, options))
        yield* Deferred.await(started)
        yield* cache.invalidateTags(["race:t"])
        yield* Deferred.succeed(release, undefined)
        expect(yield* Fiber.join(running)).toBe("stale")
        const { state, load } = loader()
        expect(yield* cache.get("race", load, options)).toBe("v1")
        expect(state.calls).toBe(1)
      })
    )

    test(
      "a stale entry is served at once while one background load refreshes it",
      Effect.gen(function* () {
        const cache = yield* Cache
        const options = { ttl: "300 millis", staleWhileRevalidate: "5 seconds" } as const
        yield* cache.get("swr", Effect.succeed("old"), options)
        yield* Effect.sleep("350 millis")
        const refresh = { calls: 0, finished: 0 }
        const refreshLoad = Effect.suspend(() => {
          refresh.calls++
          return Effect.sleep("100 millis").pipe(
            Effect.map(() => {
              refresh.finished++
              return "new"
            })
          )
        })
        const startedAt = Date.now()
        const stale = yield* Effect.all(
          Array.from({ length: 5 }, () => cache.get("swr", refreshLoad, options)),
          { concurrency: "unbounded" }
        )
        expect(Date.now() - startedAt).toBeLessThan(100)
        expect(stale).toEqual(["old", "old", "old", "old", "old"])
        expect(refresh.finished).toBe(0)
        yield* Effect.sleep("250 millis")
        expect(refresh).toEqual({ calls: 1, finished: 1 })
        const unused = loader()
        expect(yield* cache.get("swr", unused.load, options)).toBe("new")
        expect(unused.state.calls).toBe(0)
      })
    )

    test(
      "hits and misses are counted per backend",
      Effect.gen(function* () {
        const cache = yield* Cache
        const hitsBefore = yield* counterValue(cacheHitsTotal, cache.backend)
        const missesBefore = yield* counterValue(cacheMissesTotal, cache.backend)
        const { load } = loader()
        yield* cache.get("metrics", load, { ttl: "1 minute" })
        yield* cache.get("metrics", load, { ttl: "1 minute" })
        yield* cache.get("metrics", load, { ttl: "1 minute" })
        expect((yield* counterValue(cacheHitsTotal, cache.backend)) - hitsBefore).toBe(2)
        expect((yield* counterValue(cacheMissesTotal, cache.backend)) - missesBefore).toBe(1)
      })
    )

    test(
      "delete removes one entry",
      Effect.gen(function* () {
        const cache = yield* Cache
        const { state, load } = loader()
        yield* cache.get("delete", load, { ttl: "1 minute" })
        yield* cache.delete("delete")
        expect(yield* cache.get("delete", load, { ttl: "1 minute" })).toBe("v2")
        expect(state.calls).toBe(2)
      })
    )

    test(
      "values come back through JSON",
      Effect.gen(function* () {
        const cache = yield* Cache
        const value = { n: 1, list: ["a"], nested: { ok: true } }
        yield* cache.get("json", Effect.succeed(value), { ttl: "1 minute" })
        const cached = yield* cache.get("json", Effect.succeed({ n: 2, list: [], nested: { ok: false } }), {
          ttl: "1 minute"
        })
        expect(cached).toEqual(value)
        expect(cached).not.toBe(value)
      })
    )

    test(
      "ping succeeds when the backend is up",
      Effect.gen(function* () {
        const cache = yield* Cache
        expect(cache.backend).toBe(name)
        yield* cache.ping
      })
    )
  })

cacheSuite("memory", layerMemory())
cacheSuite("redis", layerRedis({ url: redisUrl, keyPrefix }))

describe("Cache (memory) LRU bound", () => {
  it.live("evicts the least recently used entry past maxEntries", () =>
    Effect.gen(function* () {
      const cache = yield* Cache
      const loads = new Map<string, number>()
      const get = (key: string) =>
        cache.get(
          key,
          Effect.sync(() => loads.set(key, (loads.get(key) ?? 0) + 1)).pipe(Effect.as(key)),
          { ttl: "1 minute" }
        )
      yield* get("a")
      yield* get("b")
      yield* get("c")
      yield* get("a")
      yield* get("d")
      // Survivors first: reloading "b" would itself evict another entry.
      yield* get("a")
      yield* get("c")
      yield* get("d")
      expect(Object.fromEntries(loads)).toEqual({ a: 1, b: 1, c: 1, d: 1 })
      yield* get("b")
      expect(loads.get("b")).toBe(2)
    }).pipe(Effect.provide(layerMemory({ maxEntries: 3 })))
  )

  it.live("without reads, the first entry is the one evicted", () =>
    Effect.gen(function* () {
      const cache = yield* Cache
      const { state, load } = loader()
      yield* cache.get("first", load, { ttl: "1 minute" })
      for (const key of ["second", "third", "fourth"]) {
        yield* cache.get(key, Effect.succeed(key), { ttl: "1 minute" })
      }
      expect(yield* cache.get("first", load, { ttl: "1 minute" })).toBe("v2")
      expect(state.calls).toBe(2)
    }).pipe(Effect.provide(layerMemory({ maxEntries: 3 })))
  )
})

describe("Cache (redis) specifics", () => {
  const client = new Redis(redisUrl, { maxRetriesPerRequest: 2 })

  afterAll(async () => {
    const keys = await client.keys(`${keyPrefix}*`)
    if (keys.length > 0) await client.del(...keys)
    await client.quit()
  })

  it.live("keeps a tag set per tag that outlives its entries", () =>
    Effect.gen(function* () {
      const cache = yield* Cache
      yield* cache.get("tagset", Effect.succeed(1), { ttl: "10 seconds", staleWhileRevalidate: "5 seconds", tags: ["ts"] })
      const [members, entryTtl, setTtl] = yield* Effect.promise(() =>
        Promise.all([
          client.smembers(`${keyPrefix}tag:ts`),
          client.pttl(`${keyPrefix}entry:tagset`),
          client.pttl(`${keyPrefix}tag:ts`)
        ])
      )
      expect(members).toEqual([`${keyPrefix}entry:tagset`])
      expect(entryTtl).toBeGreaterThan(10_000)
      expect(entryTtl).toBeLessThanOrEqual(15_000)
      // The two PTTLs are read a moment apart, so allow for the time between the reads.
      expect(setTtl).toBeGreaterThanOrEqual(entryTtl - 50)
      yield* cache.invalidateTags(["ts"])
      const [entryExists, setExists, version] = yield* Effect.promise(() =>
        Promise.all([
          client.exists(`${keyPrefix}entry:tagset`),
          client.exists(`${keyPrefix}tag:ts`),
          client.get(`${keyPrefix}tagv:ts`)
        ])
      )
      expect([entryExists, setExists, version]).toEqual([0, 0, "1"])
    }).pipe(Effect.provide(layerRedis({ url: redisUrl, keyPrefix })))
  )

  it.live("an unreachable Redis degrades to loading, and ping fails", () =>
    Effect.gen(function* () {
      const cache = yield* Cache
      const { state, load } = loader()
      expect(yield* cache.get("down", load, { ttl: "1 minute" })).toBe("v1")
      expect(yield* cache.get("down", load, { ttl: "1 minute" })).toBe("v2")
      expect(state.calls).toBe(2)
      expect(Either.isLeft(yield* Effect.either(cache.ping))).toBe(true)
    }).pipe(
      Effect.provide(layerRedis({ url: "redis://127.0.0.1:1", keyPrefix })),
      // The expected connection errors would flood the output.
      Logger.withMinimumLogLevel(LogLevel.Error)
    )
  )
})
