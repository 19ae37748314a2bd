/**
 * IP addresses as bytes and back (IPv4 and IPv6), written for untrusted input: strict parsing,
 * canonical RFC 5952 text, and no third-party helpers (the `ip` package has advisories).
 */

import {parseIPv4} from './ipv4.js'

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/

/** Parses dotted-quad IPv4 into 4 bytes; undefined for anything else. */
export function ipv4ToBytes(text: string): Uint8Array | undefined {
  const n = parseIPv4(text)
  if (n === undefined) return undefined
  return Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255)
}

/**
 * Parses IPv6 text (RFC 4291 §2.2: full, `::`-compressed, or with a trailing dotted IPv4) into 16
 * bytes. A zone suffix (`%eth0`) is refused: strip it first where a scope is expected.
 */
export function ipv6ToBytes(text: string): Uint8Array | undefined {
  if (text.length < 2 || text.length > 45) return undefined
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const parseGroups = (part: string, allowV4Tail: boolean): number[] | undefined => {
    if (part === '') return []
    const groups = part.split(':')
    const out: number[] = []
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!
      if (allowV4Tail && i === groups.length - 1 && g.includes('.')) {
        const v4 = ipv4ToBytes(g)
        if (v4 === undefined) return undefined
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
      } else {
        if (!HEX_GROUP.test(g)) return undefined
        out.push(parseInt(g, 16))
      }
    }
    return out
  }
  const head = parseGroups(halves[0]!, halves.length === 1)
  const tail = halves.length === 2 ? parseGroups(halves[1]!, true) : []
  if (head === undefined || tail === undefined) return undefined
  let groups: number[]
  if (halves.length === 1) {
    if (head.length !== 8) return undefined
    groups = head
  } else {
    // `::` stands for at least one zero group (RFC 4291 §2.2 item 2).
    const missing = 8 - head.length - tail.length
    if (missing < 1) return undefined
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail]
  }
  const bytes = new Uint8Array(16)
  groups.forEach((g, i) => {
    bytes[2 * i] = g >>> 8
    bytes[2 * i + 1] = g & 255
  })
  return bytes
}

/** Parses IPv4 or IPv6 text into 4 or 16 bytes; undefined for anything else. */
export function ipToBytes(text: string): Uint8Array | undefined {
  return text.includes(':') ? ipv6ToBytes(text) : ipv4ToBytes(text)
}

/** Formats 4 bytes as dotted-quad IPv4. */
export function ipv4FromBytes(b: Uint8Array): string {
  if (b.length !== 4) throw new RangeError('IPv4 needs 4 bytes')
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`
}

/**
 * Formats 16 bytes as canonical IPv6 text (RFC 5952: lower case, the longest run of two or more
 * zero groups compressed, the first such run on a tie; IPv4-mapped addresses as ::ffff:a.b.c.d,
 * which is also how node:dgram reports them).
 */
export function ipv6FromBytes(b: Uint8Array): string {
  if (b.length !== 16) throw new RangeError('IPv6 needs 16 bytes')
  const groups: number[] = []
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!)
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${ipv4FromBytes(b.subarray(12))}`
  }
  let bestStart = -1
  let bestLen = 0
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':')
  if (bestLen < 2) return hex(groups)
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`
}

/** Formats 4 or 16 bytes as IP text. */
export function ipFromBytes(b: Uint8Array): string {
  return b.length === 4 ? ipv4FromBytes(b) : ipv6FromBytes(b)
}

/** Canonical text of an IP address (e.g. `0:0::1` → `::1`), or undefined when it does not parse. */
export function canonicalIp(text: string): string | undefined {
  const b = ipToBytes(text)
  return b === undefined ? undefined : ipFromBytes(b)
}
