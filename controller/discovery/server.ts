/**
 * The controller's endpoint-discovery UDP port. Nodes add the controller's discovery key as a
 * WireGuard peer (no allowed IPs, persistent keepalive), so WireGuard sends a handshake
 * initiation from its own listen port about every 5 s; the source address of each initiation that
 * decodes to a known node's key is that node's public mapping, reported through `onObserved`.
 * It never answers: no session is made, and WireGuard retrying forever is what we want.
 *
 * Every datagram is hostile. In order, each step cheaper than the next and bounded in memory:
 *   1. size exactly 148 and type 1 (free);
 *   2. a token bucket per source (IPv4 address, IPv6 /64), in a bounded LRU table;
 *   3. mac1 (keyed BLAKE2s, no public-key crypto);
 *   4. the ephemeral against a bounded set of recent authenticated ones (drops replays before DH);
 *   5. a global budget of decodes per second (caps the CPU a many-source flood can take);
 *   6. first DH, initiator static key, `lookupNode` (unknown keys stop before the second DH);
 *   7. second DH (cached per known key) and the timestamp, which must rise per key (bounded LRU).
 * A replay from another address (to fake a node's endpoint) fails 4 or 7. What is left is an
 * on-path attacker racing the original packet, which WireGuard's own roaming also allows.
 */
import {SourceRateLimiter} from '../../shared/net/source-rate-limit.js'
import dgram from 'node:dgram'
import net from 'node:net'
import {DECODE_FAILURES, InitiationDecoder, type DecodeFailure, type DecoderWork} from './noise.js'

export interface DiscoveryObservation {
  readonly nodeId: string
  /** The node's WireGuard public key, base64. */
  readonly publicKey: string
  /** Where the initiation came from: `198.51.100.7:51820` or `[2001:db8::1]:51820`. */
  readonly endpoint: string
  /** `now()` when it was observed. */
  readonly at: number
}

export type DiscoveryDropReason =
  | DecodeFailure
  /** over the source's token bucket */
  | 'rate'
  /** an ephemeral we already accepted */
  | 'replay'
  /** over the global decode budget */
  | 'busy'
  /** a timestamp not above the last accepted one of that key */
  | 'stale-timestamp'

export const DISCOVERY_DROP_REASONS: readonly DiscoveryDropReason[] = [
  ...DECODE_FAILURES,
  'rate',
  'replay',
  'busy',
  'stale-timestamp',
]

export interface DiscoveryStats {
  received: number
  observed: number
  dropped: Record<DiscoveryDropReason, number>
  /** onObserved threw (the observation still counts as observed). */
  observerErrors: number
  /** mac1 checks and X25519 operations made so far. */
  work: DecoderWork
  /** Entries in the bounded tables now. */
  tables: {sources: number; ephemerals: number; keys: number}
}

export interface DiscoveryLimits {
  /** Datagrams per second per source (IPv4 address or IPv6 /64). Default 20. */
  perSourceRate: number
  /** Bucket size per source. Default 40: a CGNAT address with many nodes stays under it. */
  perSourceBurst: number
  /** Sources tracked at once; the least recently seen is forgotten. Default 65 536. */
  maxSources: number
  /** Accepted ephemerals remembered. Default 65 536 (≈ 5 minutes of 1 000 nodes). */
  maxEphemerals: number
  /** Keys whose last timestamp is kept. Default 1 048 576. */
  maxKeys: number
  /** Decodes (datagrams past mac1) per second, all sources together. Default 4 000. */
  globalDecodeRate: number
  /** Node keys whose static-static DH is kept, so their later initiations cost one DH. Default 16 384. */
  staticCacheSize: number
}

export const DEFAULT_DISCOVERY_LIMITS: DiscoveryLimits = {
  perSourceRate: 20,
  perSourceBurst: 40,
  maxSources: 65_536,
  maxEphemerals: 65_536,
  maxKeys: 1_048_576,
  globalDecodeRate: 4_000,
  staticCacheSize: 16_384,
}

export interface DiscoveryServerOptions {
  /** Address to bind, e.g. `0.0.0.0`, `::` (dual stack) or `127.0.0.1`. */
  readonly host: string
  /** UDP port; 0 picks a free one (see address()). */
  readonly port: number
  /** The discovery private key, base64 (loadOrCreateDiscoveryKey). */
  readonly privateKey: string
  /** The node holding this WireGuard public key, if any. Must be fast (an in-memory index). */
  readonly lookupNode: (publicKey: string) => {nodeId: string} | undefined
  readonly onObserved: (o: DiscoveryObservation) => void
  /** Milliseconds; default Date.now. */
  readonly now?: () => number
  readonly limits?: Partial<DiscoveryLimits>
  /** Socket errors after listen (the socket stays open). */
  readonly onError?: (err: Error) => void
}

/** Where a datagram came from, as node:dgram reports it. */
export interface Source {
  readonly address: string
  readonly port: number
}

interface Bucket {
  tokens: number
  last: number
}

export class DiscoveryServer {
  readonly publicKey: string
  readonly #opts: DiscoveryServerOptions
  readonly #limits: DiscoveryLimits
  readonly #now: () => number
  readonly #decoder: InitiationDecoder
  readonly #sources: SourceRateLimiter
  readonly #ephemerals = new Set<string>()
  readonly #lastTimestamp = new Map<string, bigint>()
  readonly #global: Bucket
  readonly #stats = {
    received: 0,
    observed: 0,
    observerErrors: 0,
    dropped: Object.fromEntries(DISCOVERY_DROP_REASONS.map((r) => [r, 0])) as Record<
      DiscoveryDropReason,
      number
    >,
  }
  #socket: dgram.Socket | undefined

  constructor(opts: DiscoveryServerOptions) {
    this.#opts = opts
    this.#limits = {...DEFAULT_DISCOVERY_LIMITS, ...opts.limits}
    this.#now = opts.now ?? Date.now
    this.#decoder = new InitiationDecoder(opts.privateKey, {staticCacheSize: this.#limits.staticCacheSize})
    this.publicKey = this.#decoder.publicKey
    this.#global = {tokens: this.#limits.globalDecodeRate, last: this.#now()}
    this.#sources = new SourceRateLimiter({
      perSecond: this.#limits.perSourceRate,
      burst: this.#limits.perSourceBurst,
      maxSources: this.#limits.maxSources,
      clock: {now: this.#now},
    })
  }

  /** Binds the UDP socket; resolves with the bound address. */
  async listen(): Promise<Source> {
    if (this.#socket) throw new Error('discovery server already listening')
    const socket = dgram.createSocket({type: net.isIPv6(this.#opts.host) ? 'udp6' : 'udp4'})
    this.#socket = socket
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(this.#opts.port, this.#opts.host, () => {
        socket.off('error', reject)
        resolve()
      })
    }).catch((err: unknown) => {
      this.#socket = undefined
      socket.close()
      throw err
    })
    socket.on('error', (err) => this.#opts.onError?.(err))
    socket.on('message', (msg, rinfo) => this.handleDatagram(msg, rinfo))
    return this.address()
  }

  address(): Source {
    if (!this.#socket) throw new Error('discovery server is not listening')
    const a = this.#socket.address()
    return {address: a.address, port: a.port}
  }

  async close(): Promise<void> {
    const s = this.#socket
    this.#socket = undefined
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()))
  }

  stats(): DiscoveryStats {
    return {
      received: this.#stats.received,
      observed: this.#stats.observed,
      observerErrors: this.#stats.observerErrors,
      dropped: {...this.#stats.dropped},
      work: {...this.#decoder.work},
      tables: {
        sources: this.#sources.stats().sources,
        ephemerals: this.#ephemerals.size,
        keys: this.#lastTimestamp.size,
      },
    }
  }

  /** One datagram as the socket delivers it (public so tests can drive it without a network). */
  handleDatagram(msg: Buffer, from: Source): void {
    this.#stats.received++
    const drop = (reason: DiscoveryDropReason): void => {
      this.#stats.dropped[reason]++
    }
    // 1. Shape, free.
    if (msg.length !== 148) return drop('size')
    if (msg.readUInt32LE(0) !== 1) return drop('type')
    // 2. Per-source bucket, before any crypto.
    const now = this.#now()
    const address = normalizeAddress(from.address)
    if (!this.#sources.take(rateKey(address))) return drop('rate')
    // 3. mac1.
    const bad = this.#decoder.precheck(msg)
    if (bad) return drop(bad)
    // 4. Replayed ephemeral: no DH for it.
    const ephemeral = msg.toString('base64', 8, 40)
    if (this.#ephemerals.has(ephemeral)) return drop('replay')
    // 5. Global budget.
    if (!takeToken(this.#global, now, this.#limits.globalDecodeRate, this.#limits.globalDecodeRate))
      return drop('busy')
    // 6-7. Noise.
    const r = this.#decoder.decode(msg, (key) => this.#opts.lookupNode(key), true)
    if (!r.ok) return drop(r.reason)
    const {initiatorStatic, timestamp} = r.initiation
    // Authenticated from here on (only the key's holder can seal the timestamp), so remembering
    // its ephemeral cannot be used to flush the set; a repeat of it now costs no DH.
    remember(this.#ephemerals, ephemeral, undefined, this.#limits.maxEphemerals)
    const last = this.#lastTimestamp.get(initiatorStatic)
    if (last !== undefined && timestamp <= last) return drop('stale-timestamp')
    remember(this.#lastTimestamp, initiatorStatic, timestamp, this.#limits.maxKeys)

    this.#stats.observed++
    try {
      this.#opts.onObserved({
        nodeId: r.peer.nodeId,
        publicKey: initiatorStatic,
        endpoint: formatEndpoint(address, from.port),
        at: now,
      })
    } catch {
      this.#stats.observerErrors++
    }
  }
}

function takeToken(b: Bucket, now: number, ratePerSecond: number, burst: number): boolean {
  if (now > b.last) {
    b.tokens = Math.min(burst, b.tokens + ((now - b.last) * ratePerSecond) / 1000)
    b.last = now
  }
  if (b.tokens < 1) return false
  b.tokens -= 1
  return true
}

/** Inserts (or refreshes) into a Map or Set used as an LRU of at most `max` entries. */
function remember<K, V>(table: Map<K, V> | Set<K>, key: K, value: V, max: number): void {
  table.delete(key)
  if (table.size >= max) {
    const oldest = table.keys().next().value
    if (oldest !== undefined) table.delete(oldest)
  }
  if (table instanceof Map) table.set(key, value)
  else table.add(key)
}

/** `::ffff:198.51.100.7` (a dual-stack socket's view of IPv4) becomes `198.51.100.7`. */
export function normalizeAddress(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  return m ? m[1]! : address
}

/** `ip:port`, with the IPv6 address bracketed. */
export function formatEndpoint(address: string, port: number): string {
  return net.isIPv6(address.replace(/%.*$/, '')) ? `[${address}]:${port}` : `${address}:${port}`
}

/** The rate-limit key of an address: IPv4 as is, IPv6 its /64 (one subscriber's usual prefix). */
export function rateKey(address: string): string {
  if (!address.includes(':')) return address
  const groups = expandIPv6(address.replace(/%.*$/, ''))
  return groups ? `${groups.slice(0, 4).join(':')}::/64` : address
}

/** Eight 16-bit groups (lower-case hex, no leading zeros) of an IPv6 address, or undefined. */
function expandIPv6(address: string): string[] | undefined {
  if (!net.isIPv6(address)) return undefined
  const parts = address.split('::')
  const side = (s: string | undefined): string[] => {
    if (!s) return []
    return s.split(':').flatMap((g) => {
      if (!g.includes('.')) return [g]
      const o = g.split('.').map(Number)
      return [((o[0]! << 8) | o[1]!).toString(16), ((o[2]! << 8) | o[3]!).toString(16)]
    })
  }
  const head = side(parts[0])
  const tail = side(parts[1])
  const groups =
    parts.length === 2 ? [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail] : head
  return groups.map((g) => parseInt(g, 16).toString(16))
}
