import type { LookupAddress } from "node:dns"
import { lookup } from "node:dns/promises"
import { isIPv4, isIPv6, type LookupFunction } from "node:net"
import { Effect, Schema } from "effect"

/**
 * Outbound URL guard for webhook deliveries (SSRF): customers choose the URL, so without it
 * they could make the worker call loopback services, the private network or the cloud
 * metadata endpoint and read the answer back from the attempt log.
 */

export const BlockReason = Schema.Literal(
  "loopback",
  "private",
  "link-local",
  "cgnat",
  "multicast",
  "unspecified",
  "reserved",
  "documentation",
  "benchmarking",
  "metadata",
  "invalid"
)
export type BlockReason = typeof BlockReason.Type

export type AddressClass = "public" | BlockReason

interface Address {
  readonly family: 4 | 6
  readonly value: bigint
}

interface Cidr extends Address {
  readonly prefix: number
}

const width = (family: 4 | 6) => (family === 4 ? 32 : 128)

const parseIPv4 = (text: string): bigint | undefined =>
  isIPv4(text) ? text.split(".").reduce((acc, octet) => (acc << 8n) | BigInt(octet), 0n) : undefined

const parseIPv6 = (input: string): bigint | undefined => {
  // A zone (fe80::1%eth0) names the interface, not the address.
  let text = input.split("%")[0]!
  if (!isIPv6(text)) return undefined
  const lastColon = text.lastIndexOf(":")
  const v4 = parseIPv4(text.slice(lastColon + 1))
  if (v4 !== undefined) text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`
  const [head, tail] = text.split("::") as [string, string | undefined]
  const left = head === "" ? [] : head.split(":")
  const right = tail === undefined || tail === "" ? [] : tail.split(":")
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right]
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(`0x${group}`), 0n)
}

const parseAddress = (text: string): Address | undefined => {
  const v4 = parseIPv4(text)
  if (v4 !== undefined) return { family: 4, value: v4 }
  const v6 = parseIPv6(text)
  return v6 === undefined ? undefined : { family: 6, value: v6 }
}

/** `a.b.c.d/n`, `x::y/n`, or a bare address (a single host). */
const parseCidr = (text: string): Cidr | undefined => {
  const [ip, bits, extra] = text.split("/")
  const address = extra === undefined ? parseAddress(ip!) : undefined
  if (address === undefined) return undefined
  const prefix = bits === undefined ? width(address.family) : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN
  return prefix <= width(address.family) ? { ...address, prefix } : undefined
}

const contains = (cidr: Cidr, address: Address) => {
  if (cidr.family !== address.family) return false
  const shift = BigInt(width(cidr.family) - cidr.prefix)
  return cidr.value >> shift === address.value >> shift
}

const cidr = (text: string): Cidr => {
  const parsed = parseCidr(text)
  if (parsed === undefined) throw new Error(`bad built-in CIDR ${text}`)
  return parsed
}

/** First match wins, so a specific range precedes the range that holds it. */
const rules: ReadonlyArray<readonly [Cidr, BlockReason]> = (
  [
    ["0.0.0.0/8", "unspecified"],
    ["10.0.0.0/8", "private"],
    // Alibaba Cloud's metadata service sits inside the CGNAT range.
    ["100.100.100.200/32", "metadata"],
    ["100.64.0.0/10", "cgnat"],
    ["127.0.0.0/8", "loopback"],
    ["169.254.169.254/32", "metadata"],
    ["169.254.0.0/16", "link-local"],
    ["172.16.0.0/12", "private"],
    ["192.0.0.0/24", "reserved"],
    ["192.0.2.0/24", "documentation"],
    ["192.88.99.0/24", "reserved"],
    ["192.168.0.0/16", "private"],
    ["198.18.0.0/15", "benchmarking"],
    ["198.51.100.0/24", "documentation"],
    ["203.0.113.0/24", "documentation"],
    ["224.0.0.0/4", "multicast"],
    ["240.0.0.0/4", "reserved"],
    ["::/128", "unspecified"],
    ["::1/128", "loopback"],
    ["2001:2::/48", "benchmarking"],
    // IETF protocol assignments, Teredo among them (it tunnels to an obfuscated IPv4).
    ["2001::/23", "reserved"],
    ["2001:db8::/32", "documentation"],
    // 6to4 relays forward to an IPv4 address of the sender's choosing.
    ["2002::/16", "reserved"],
    ["3fff::/20", "documentation"],
    ["fd00:ec2::254/128", "metadata"],
    ["fc00::/7", "private"],
    ["fe80::/10", "link-local"],
    ["ff00::/8", "multicast"]
  ] as const
).map(([range, reason]) => [cidr(range), reason] as const)

const ipv4Mapped = cidr("::ffff:0:0/96")
const nat64 = cidr("64:ff9b::/96")
// Everything outside IPv6 global unicast is special-purpose or unallocated.
const globalUnicast = cidr("2000::/3")

const embeddedIPv4 = (address: Address): Address => ({ family: 4, value: address.value & 0xffffffffn })

const classify = (address: Address): AddressClass => {
  // Both carry an IPv4 destination; the packet ends up there, so that address decides.
  if (contains(ipv4Mapped, address) || contains(nat64, address)) return classify(embeddedIPv4(address))
  const rule = rules.find(([range]) => contains(range, address))
  if (rule !== undefined) return rule[1]
  return address.family === 6 && !contains(globalUnicast, address) ? "reserved" : "public"
}

/** "public", or why a delivery must not go to this address ("invalid" when it is no IP). */
export const classifyAddress = (ip: string): AddressClass => {
  const address = parseAddress(ip)
  return address === undefined ? "invalid" : classify(address)
}

export class UrlRejected extends Schema.TaggedError<UrlRejected>()("UrlRejected", {
  reason: Schema.Literal("invalid_url", "scheme", "https_required", "credentials", "blocked_address"),
  message: Schema.String,
  /** For blocked_address: the offending address and why it is blocked. */
  address: Schema.optional(Schema.String),
  blockReason: Schema.optional(BlockReason)
}) {}

export class ResolveFailed extends Schema.TaggedError<ResolveFailed>()("ResolveFailed", {
  hostname: Schema.String,
  message: Schema.String
}) {}

export type Resolve = (hostname: string) => Promise<ReadonlyArray<LookupAddress>>

const systemResolve: Resolve = (hostname) => lookup(hostname, { all: true })

export interface CheckUrlOptions {
  /** CIDRs or single addresses reachable despite the rules, e.g. ["127.0.0.1/32"] in development. */
  readonly allow: ReadonlyArray<string>
  readonly requireHttps: boolean
  /** The one DNS lookup of a delivery; injectable so tests can control and count it. */
  readonly resolve?: Resolve
}

/** A checked destination: connect to `address`, present `hostname` (Host header, TLS SNI). */
export interface PinnedTarget {
  readonly url: URL
  readonly hostname: string
  readonly address: string
  readonly family: 4 | 6
}

const isAllowed = (allow: ReadonlyArray<Cidr>, address: Address) => {
  // A socket to ::ffff:a.b.c.d reaches a.b.c.d, so an IPv4 entry covers it.
  const normalized = contains(ipv4Mapped, address) ? embeddedIPv4(address) : address
  return allow.some((range) => contains(range, normalized))
}

/** Whether `entry` is an IP address or CIDR the allow-list accepts. */
export const isAllowListEntry = (entry: string) => parseCidr(entry) !== undefined

const blocked = (address: string, verdict: BlockReason, hostname: string | undefined) =>
  new UrlRejected({
    reason: "blocked_address",
    message: hostname === undefined ? `${address} is ${verdict}` : `${hostname} resolves to ${address}, which is ${verdict}`,
    address,
    blockReason: verdict
  })

/** Fails on the first address outside the public internet and not allowed. */
const checkAddresses = (resolved: ReadonlyArray<LookupAddress>, allow: ReadonlyArray<Cidr>, hostname: string | undefined) =>
  Effect.forEach(
    resolved,
    ({ address }) => {
      const parsed = parseAddress(address)
      const verdict = parsed === undefined ? "invalid" : classify(parsed)
      return verdict !== "public" && !(parsed !== undefined && isAllowed(allow, parsed))
        ? Effect.fail(blocked(address, verdict, hostname))
        : Effect.void
    },
    { discard: true }
  )

/**
 * Everything that can be judged without DNS: the scheme, https, credentials, and the
 * address when the host is a literal IP.
 */
const checkWithoutDns = (url: string, options: Omit<CheckUrlOptions, "resolve">) =>
  Effect.gen(function* () {
    if (!URL.canParse(url)) return yield* new UrlRejected({ reason: "invalid_url", message: "not a valid URL" })
    const target = new URL(url)
    if (target.protocol !== "http:" && target.protocol !== "https:") {
      return yield* new UrlRejected({ reason: "scheme", message: `scheme ${target.protocol} is not http or https` })
    }
    if (options.requireHttps && target.protocol !== "https:") {
      return yield* new UrlRejected({ reason: "https_required", message: "only https URLs are allowed" })
    }
    if (target.username !== "" || target.password !== "") {
      // They would be sent as Basic auth and end up in logs; receivers authenticate by signature.
      return yield* new UrlRejected({ reason: "credentials", message: "URLs with credentials are not allowed" })
    }
    const allow = yield* Effect.forEach(options.allow, (entry) => {
      const range = parseCidr(entry)
      return range === undefined ? Effect.dieMessage(`webhook allow-list entry ${entry} is not an IP or CIDR`) : Effect.succeed(range)
    })
    const hostname = target.hostname.startsWith("[") ? target.hostname.slice(1, -1) : target.hostname
    const literal = parseAddress(hostname)
    if (literal !== undefined) yield* checkAddresses([{ address: hostname, family: literal.family }], allow, undefined)
    return { target, hostname, literal, allow }
  })

/**
 * The check when a URL is saved: a name is not resolved then, because what it resolves to
 * at send time is what counts (and is checked by `checkUrl`).
 */
export const checkUrlToSave = (url: string, options: Omit<CheckUrlOptions, "resolve">): Effect.Effect<URL, UrlRejected> =>
  Effect.map(checkWithoutDns(url, options), ({ target }) => target)

export const checkUrl = (url: string, options: CheckUrlOptions): Effect.Effect<PinnedTarget, UrlRejected | ResolveFailed> =>
  Effect.gen(function* () {
    const { target, hostname, literal, allow } = yield* checkWithoutDns(url, options)
    const resolve = options.resolve ?? systemResolve
    const resolved: ReadonlyArray<LookupAddress> =
      literal !== undefined
        ? [{ address: hostname, family: literal.family }]
        : yield* Effect.tryPromise({
            try: () => resolve(hostname),
            catch: (error) => new ResolveFailed({ hostname, message: error instanceof Error ? error.message : String(error) })
          })
    // Any one of them could be the address the connection ends up using.
    if (literal === undefined) yield* checkAddresses(resolved, allow, hostname)
    const first = resolved[0]
    if (first === undefined) return yield* new ResolveFailed({ hostname, message: "no addresses" })
    return { url: target, hostname, address: first.address, family: first.family === 4 ? 4 : 6 } as const
  })

/**
 * A `lookup` for node's http/https/net that answers with the checked address, so the
 * connection goes where the check looked: a second DNS query could be answered
 * differently (DNS rebinding) and would undo the check.
 */
export const pinnedLookup =
  (target: PinnedTarget): LookupFunction =>
  (_hostname, options, callback) => {
    // With autoSelectFamily (node's default since 20) net asks for all addresses.
    if (options.all === true) callback(null, [{ address: target.address, family: target.family }])
    else callback(null, target.address, target.family)
  }
