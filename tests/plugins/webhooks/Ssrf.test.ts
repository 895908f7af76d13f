import { describe, expect, it } from "@effect/vitest"
import type { LookupAddress } from "node:dns"
import { Cause, Effect, Exit } from "effect"
import { type AddressClass, checkUrl, classifyAddress, pinnedLookup, type Resolve } from "../../../plugins/webhooks/Ssrf.ts"

const table: ReadonlyArray<readonly [string, AddressClass]> = [
  ["8.8.8.8", "public"],
  ["1.1.1.1", "public"],
  ["0.0.0.0", "unspecified"],
  ["0.255.255.255", "unspecified"],
  ["1.0.0.0", "public"],
  ["10.0.0.0", "private"],
  ["10.255.255.255", "private"],
  ["9.255.255.255", "public"],
  ["11.0.0.0", "public"],
  ["100.64.0.0", "cgnat"],
  ["100.127.255.255", "cgnat"],
  ["100.63.255.255", "public"],
  ["100.128.0.0", "public"],
  ["100.100.100.200", "metadata"],
  ["127.0.0.1", "loopback"],
  ["127.255.255.255", "loopback"],
  ["126.255.255.255", "public"],
  ["128.0.0.0", "public"],
  ["169.254.169.254", "metadata"],
  ["169.254.169.253", "link-local"],
  ["169.254.0.0", "link-local"],
  ["169.254.255.255", "link-local"],
  ["169.253.255.255", "public"],
  ["169.255.0.0", "public"],
  ["172.16.0.0", "private"],
  ["172.31.255.255", "private"],
  ["172.15.255.255", "public"],
  ["172.32.0.0", "public"],
  ["192.168.0.0", "private"],
  ["192.168.255.255", "private"],
  ["192.167.255.255", "public"],
  ["192.169.0.0", "public"],
  ["192.0.0.8", "reserved"],
  ["192.0.2.0", "documentation"],
  ["192.0.2.255", "documentation"],
  ["192.0.1.255", "public"],
  ["192.0.3.0", "public"],
  ["192.88.99.1", "reserved"],
  ["198.18.0.0", "benchmarking"],
  ["198.19.255.255", "benchmarking"],
  ["198.17.255.255", "public"],
  ["198.20.0.0", "public"],
  ["198.51.100.0", "documentation"],
  ["198.51.100.255", "documentation"],
  ["198.51.99.255", "public"],
  ["198.51.101.0", "public"],
  ["203.0.113.0", "documentation"],
  ["203.0.113.255", "documentation"],
  ["203.0.112.255", "public"],
  ["203.0.114.0", "public"],
  ["224.0.0.0", "multicast"],
  ["239.255.255.255", "multicast"],
  ["223.255.255.255", "public"],
  ["240.0.0.0", "reserved"],
  ["255.255.255.254", "reserved"],
  ["255.255.255.255", "reserved"],
  ["::", "unspecified"],
  ["::1", "loopback"],
  ["::2", "reserved"],
  ["0:0:0:0:0:0:0:1", "loopback"],
  ["::ffff:127.0.0.1", "loopback"],
  ["::ffff:7f00:1", "loopback"],
  ["::ffff:10.0.0.1", "private"],
  ["::ffff:169.254.169.254", "metadata"],
  ["::ffff:8.8.8.8", "public"],
  ["::fffe:808:808", "reserved"],
  ["64:ff9b::127.0.0.1", "loopback"],
  ["64:ff9b::a9fe:a9fe", "metadata"],
  ["64:ff9b::8.8.8.8", "public"],
  ["64:ff9b::1:808:808", "reserved"],
  ["64:ff9b:1::808:808", "reserved"],
  ["fc00::", "private"],
  ["fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "private"],
  ["fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["fd00:ec2::254", "metadata"],
  ["fd00:ec2::253", "private"],
  ["fe80::", "link-local"],
  ["fe80::1%eth0", "link-local"],
  ["febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local"],
  ["fec0::1", "reserved"],
  ["ff00::", "multicast"],
  ["ff02::1", "multicast"],
  ["feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["2001:db8::", "documentation"],
  ["2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "documentation"],
  ["2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "public"],
  ["2001:db9::", "public"],
  ["2001::1", "reserved"],
  ["2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["2001:200::", "public"],
  ["2001:2::1", "benchmarking"],
  ["2001:2:0:ffff::1", "benchmarking"],
  ["2001:2:1::", "reserved"],
  ["2002::1", "reserved"],
  ["2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["2003::", "public"],
  ["3fff::1", "documentation"],
  ["3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", "documentation"],
  ["3fff:1000::", "public"],
  ["1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["4000::", "reserved"],
  ["100::1", "reserved"],
  ["2606:4700:4700::1111", "public"],
  ["2001:4860:4860::8888", "public"],
  ["localhost", "invalid"],
  ["256.1.1.1", "invalid"],
  ["1.2.3", "invalid"],
  ["010.0.0.1", "invalid"],
  ["1::2::3", "invalid"],
  ["", "invalid"]
]

describe("classifyAddress", () => {
  it.each(table)("%s is %s", (ip, expected) => {
    expect(classifyAddress(ip)).toBe(expected)
  })
})

const open = { allow: [], requireHttps: false }

/** A resolver answering from a fixed table and counting its calls. */
const fakeResolver = (answers: Record<string, ReadonlyArray<LookupAddress>>) => {
  const calls: Array<string> = []
  const resolve: Resolve = async (hostname) => {
    calls.push(hostname)
    const answer = answers[hostname]
    if (answer === undefined) throw new Error(`getaddrinfo ENOTFOUND ${hostname}`)
    return answer
  }
  return { resolve, calls }
}

describe("checkUrl", () => {
  it.effect("blocks literal addresses of internal ranges without resolving them", () =>
    Effect.gen(function* () {
      const { resolve, calls } = fakeResolver({})
      const cases = [
        ["http://10.0.0.1/hook", "10.0.0.1", "private"],
        ["http://169.254.169.254/latest/meta-data/", "169.254.169.254", "metadata"],
        ["http://[::1]:8080/", "::1", "loopback"],
        ["http://[::ffff:127.0.0.1]/", "::ffff:7f00:1", "loopback"],
        // The URL parser turns these spellings into 127.0.0.1.
        ["http://2130706433/", "127.0.0.1", "loopback"],
        ["http://0x7f.1/", "127.0.0.1", "loopback"]
      ] as const
      for (const [url, address, blockReason] of cases) {
        const error = yield* Effect.flip(checkUrl(url, { ...open, resolve }))
        expect(error).toMatchObject({ _tag: "UrlRejected", reason: "blocked_address", address, blockReason })
      }
      expect(calls).toEqual([])
    })
  )

  it.effect("blocks localhost unless the allow-list covers what it resolves to", () =>
    Effect.gen(function* () {
      const blocked = yield* Effect.flip(checkUrl("http://localhost:9/", open))
      expect(blocked).toMatchObject({ _tag: "UrlRejected", reason: "blocked_address", blockReason: "loopback" })
      expect(blocked.message).toContain("localhost resolves to")
      const allowed = yield* checkUrl("http://localhost:9/", { ...open, allow: ["127.0.0.1/32", "::1/128"] })
      expect(allowed.hostname).toBe("localhost")
      expect(["127.0.0.1", "::1"]).toContain(allowed.address)
    })
  )

  it.effect("the allow-list admits exactly its ranges, IPv4 entries covering IPv4-mapped addresses", () =>
    Effect.gen(function* () {
      const allow = ["127.0.0.1/32", "10.1.0.0/16"]
      expect(yield* checkUrl("http://127.0.0.1:4000/hook", { ...open, allow })).toMatchObject({
        hostname: "127.0.0.1",
        address: "127.0.0.1",
        family: 4
      })
      expect((yield* checkUrl("http://[::ffff:127.0.0.1]/", { ...open, allow })).family).toBe(6)
      expect((yield* checkUrl("http://10.1.255.255/", { ...open, allow })).address).toBe("10.1.255.255")
      expect(yield* Effect.flip(checkUrl("http://127.0.0.2/", { ...open, allow }))).toMatchObject({ blockReason: "loopback" })
      expect(yield* Effect.flip(checkUrl("http://10.2.0.0/", { ...open, allow }))).toMatchObject({ blockReason: "private" })
      expect(yield* Effect.flip(checkUrl("http://[::1]/", { ...open, allow }))).toMatchObject({ blockReason: "loopback" })
    })
  )

  it.effect("requires every resolved address to pass and pins the first", () =>
    Effect.gen(function* () {
      const { resolve, calls } = fakeResolver({
        "mixed.example.test": [
          { address: "93.184.215.14", family: 4 },
          { address: "10.0.0.5", family: 4 }
        ],
        "public.example.test": [
          { address: "2606:4700::6810:84e5", family: 6 },
          { address: "93.184.215.14", family: 4 }
        ],
        "junk.example.test": [{ address: "not-an-ip", family: 4 }],
        "empty.example.test": []
      })
      expect(yield* Effect.flip(checkUrl("http://mixed.example.test/", { ...open, resolve }))).toMatchObject({
        reason: "blocked_address",
        address: "10.0.0.5",
        blockReason: "private"
      })
      expect(yield* checkUrl("https://public.example.test/x", { ...open, resolve })).toMatchObject({
        hostname: "public.example.test",
        address: "2606:4700::6810:84e5",
        family: 6
      })
      expect(yield* Effect.flip(checkUrl("http://junk.example.test/", { ...open, resolve }))).toMatchObject({ blockReason: "invalid" })
      expect(yield* Effect.flip(checkUrl("http://empty.example.test/", { ...open, resolve }))).toMatchObject({ _tag: "ResolveFailed" })
      expect(yield* Effect.flip(checkUrl("http://missing.example.test/", { ...open, resolve }))).toMatchObject({
        _tag: "ResolveFailed",
        hostname: "missing.example.test",
        message: "getaddrinfo ENOTFOUND missing.example.test"
      })
      expect(calls).toEqual(["mixed.example.test", "public.example.test", "junk.example.test", "empty.example.test", "missing.example.test"])
    })
  )

  it.effect("refuses bad schemes, credentials, unparsable URLs, and http when https is required", () =>
    Effect.gen(function* () {
      const reason = (url: string, options = open) => Effect.map(Effect.flip(checkUrl(url, options)), (e) => (e._tag === "UrlRejected" ? e.reason : e._tag))
      expect(yield* reason("not a url")).toBe("invalid_url")
      expect(yield* reason("ftp://93.184.215.14/")).toBe("scheme")
      expect(yield* reason("file:///etc/passwd")).toBe("scheme")
      expect(yield* reason("http://user:pass@93.184.215.14/")).toBe("credentials")
      expect(yield* reason("http://user@93.184.215.14/")).toBe("credentials")
      expect(yield* reason("http://93.184.215.14/", { ...open, requireHttps: true })).toBe("https_required")
      expect((yield* checkUrl("https://93.184.215.14/", { ...open, requireHttps: true })).address).toBe("93.184.215.14")
    })
  )

  it.effect("treats a malformed allow-list entry as a defect", () =>
    Effect.gen(function* () {
      for (const entry of ["127.0.0.1/33", "127.0.0.0/", "localhost", "::1/129", "10.0.0.0/8/8"]) {
        const exit = yield* Effect.exit(checkUrl("http://93.184.215.14/", { ...open, allow: [entry] }))
        expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      }
    })
  )
})

describe("pinnedLookup", () => {
  it("answers with the checked address whatever name is asked, in both callback forms", () => {
    const lookup = pinnedLookup({ url: new URL("https://hooks.example.test/"), hostname: "hooks.example.test", address: "203.0.113.9", family: 4 })
    const answers: Array<unknown> = []
    lookup("hooks.example.test", {}, (error, address, family) => answers.push([error, address, family]))
    lookup("hooks.example.test", { all: true }, (error, addresses) => answers.push([error, addresses]))
    expect(answers).toEqual([
      [null, "203.0.113.9", 4],
      [null, [{ address: "203.0.113.9", family: 4 }]]
    ])
  })
})
