const C1 = 0xcc9e2d51
const C2 = 0x1b873593

const mixBlock = (h: number, k: number): number => {
  k = Math.imul(k, C1)
  k = (k << 15) | (k >>> 17)
  k = Math.imul(k, C2)
  h ^= k
  h = (h << 13) | (h >>> 19)
  return (Math.imul(h, 5) + 0xe6546b64) | 0
}

/**
 * MurmurHash3 x86 32-bit over the UTF-8 bytes of `input`, as an unsigned 32-bit integer.
 *
 * The string is encoded on the fly (lone surrogates become U+FFFD, as `Buffer.from` and
 * `TextEncoder` do) so hashing a bucketing key allocates nothing. UTF-8 is what Unleash's
 * Java, Go and Python SDKs hash, so buckets agree with theirs for any identifier.
 */
export const murmur3 = (input: string, seed = 0): number => {
  let h = seed | 0
  let block = 0
  let shift = 0
  let length = 0
  const n = input.length
  for (let i = 0; i < n; i++) {
    let c = input.charCodeAt(i)
    // Up to four UTF-8 bytes of this code point, lowest byte first.
    let bytes: number
    let count: number
    if (c < 0x80) {
      bytes = c
      count = 1
    } else if (c < 0x800) {
      bytes = (0xc0 | (c >>> 6)) | ((0x80 | (c & 0x3f)) << 8)
      count = 2
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = i + 1 < n ? input.charCodeAt(i + 1) : 0
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00)
          i++
          bytes =
            (0xf0 | (cp >>> 18)) |
            ((0x80 | ((cp >>> 12) & 0x3f)) << 8) |
            ((0x80 | ((cp >>> 6) & 0x3f)) << 16) |
            ((0x80 | (cp & 0x3f)) << 24)
          count = 4
        } else {
          c = 0xfffd
          bytes = (0xe0 | (c >>> 12)) | ((0x80 | ((c >>> 6) & 0x3f)) << 8) | ((0x80 | (c & 0x3f)) << 16)
          count = 3
        }
      } else {
        bytes = (0xe0 | (c >>> 12)) | ((0x80 | ((c >>> 6) & 0x3f)) << 8) | ((0x80 | (c & 0x3f)) << 16)
        count = 3
      }
    }
    length += count
    for (; count > 0; count--, bytes >>>= 8) {
      block |= (bytes & 0xff) << shift
      shift += 8
      if (shift === 32) {
        h = mixBlock(h, block)
        block = 0
        shift = 0
      }
    }
  }
  if (shift > 0) {
    let k = Math.imul(block, C1)
    k = (k << 15) | (k >>> 17)
    h ^= Math.imul(k, C2)
  }
  h ^= length
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/**
 * Unleash's bucket for `id` within `groupId`: 1..normalizer. Rollouts use normalizer 100 and
 * seed 0; variant selection uses the total variant weight and seed 86028157.
 */
export const normalizedHash = (id: string, groupId: string, normalizer = 100, seed = 0): number =>
  (murmur3(`${groupId}:${id}`, seed) % normalizer) + 1
