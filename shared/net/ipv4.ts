/**
 * IPv4 address and prefix helpers: strict parsing (no octal, no shorthand) for untrusted input.
 * Addresses are handled as unsigned 32-bit numbers.
 */

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/

/** Parses dotted-quad IPv4; returns undefined for anything else (leading zeros are refused). */
export function parseIPv4(text: string): number | undefined {
  const parts = text.split('.')
  if (parts.length !== 4) return undefined
  let value = 0
  for (const part of parts) {
    if (!OCTET.test(part)) return undefined
    value = value * 256 + Number(part)
  }
  return value >>> 0
}

export function formatIPv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.')
}

export interface Cidr {
  /** Network address (host bits zero). */
  readonly base: number
  readonly prefix: number
  /** Number of addresses in the prefix, network and broadcast included. */
  readonly size: number
}

/**
 * Parses "a.b.c.d/n". With `strict` (the default) host bits must be zero, as a network
 * definition requires; `strict: false` accepts an interface address such as 10.0.0.5/24.
 */
export function parseCidr(text: string, opts: {strict?: boolean} = {}): Cidr | undefined {
  const slash = text.indexOf('/')
  if (slash < 0) return undefined
  const addr = parseIPv4(text.slice(0, slash))
  const prefixText = text.slice(slash + 1)
  if (addr === undefined || !/^(3[0-2]|[12]?\d)$/.test(prefixText)) return undefined
  const prefix = Number(prefixText)
  const mask = prefixMask(prefix)
  const base = (addr & mask) >>> 0
  if ((opts.strict ?? true) && base !== addr) return undefined
  return {base, prefix, size: 2 ** (32 - prefix)}
}

export const formatCidr = (c: Cidr): string => `${formatIPv4(c.base)}/${c.prefix}`

export const prefixMask = (prefix: number): number => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0)

export const cidrContains = (c: Cidr, addr: number): boolean => (addr & prefixMask(c.prefix)) >>> 0 === c.base

export const cidrsOverlap = (a: Cidr, b: Cidr): boolean =>
  a.prefix <= b.prefix ? cidrContains(a, b.base) : cidrContains(b, a.base)

/**
 * Host addresses usable for nodes: the network and broadcast addresses excluded
 * (for /31 and /32 there are none; mesh networks are /8 to /30).
 */
export function hostRange(c: Cidr): {first: number; last: number; count: number} {
  if (c.prefix >= 31) return {first: c.base, last: c.base - 1, count: 0}
  return {first: c.base + 1, last: c.base + c.size - 2, count: c.size - 2}
}
