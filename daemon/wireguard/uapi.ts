/**
 * A client for wireguard-go's cross-platform configuration protocol (UAPI,
 * https://www.wireguard.com/xplatform/): `get=1` and `set=1` transactions over the unix socket
 * /var/run/wireguard/IFNAME.sock, so meshd reads and changes a userspace interface without
 * spawning `wg` (issue 7: the spawns cost meshd 15-28 % of its CPU and blocked its event loop).
 * It is not a `wg` replacement: no kernel interfaces (those speak netlink), no name resolution.
 *
 * The socket's path is the same in every network namespace (wireguard-go keeps it in the mount
 * namespace), so a driver that runs `ip` through a namespace still reaches it here.
 *
 * Every reply is hostile input: it is capped in size (16 MiB: a peer is ≈ 400 bytes, so tens of
 * thousands of peers fit) and in time (5 s), and parsed strictly: an unknown key is skipped (a
 * newer wireguard-go may add some), a malformed line or value fails the whole reply with
 * WIREGUARD_FAILED, never with a crash or a half-read state. What we send is checked first too:
 * a value wireguard-go would refuse halfway through a transaction (it applies lines as it reads
 * them, and keeps what came before the bad one) is refused here before a byte goes out, as `wg`
 * does when it cannot resolve an endpoint.
 */
import net from 'node:net'
import path from 'node:path'
import nacl from 'tweetnacl'
import {systemClock, type Clock} from '../../shared/clock.js'
import {MeshError} from '../../shared/errors.js'
import {isWireGuardKey} from '../../shared/keys.js'
import {formatEndpoint, parseEndpoint} from '../../shared/net/endpoint.js'
import {parseIPv4} from '../../shared/net/ipv4.js'
import {ipv6ToBytes} from '../../shared/net/ip-bytes.js'
import type {PeerEdit, PeerState, WgDevice, WgSet} from './driver.js'

/** Where wireguard-go puts its control sockets, one per interface. */
export const UAPI_DIR = '/var/run/wireguard'
/** The largest reply read (a bigger one fails): far above thousands of peers. */
export const UAPI_MAX_REPLY_BYTES = 16 * 1024 * 1024
/** How long one transaction may take, connect to last byte. */
export const UAPI_TIMEOUT_MS = 5_000

/** Linux interface names: what `ip link` accepts, and nothing that could leave UAPI_DIR. */
const IFNAME_RE = /^[A-Za-z0-9_=+.-]{1,15}$/

const fail = (message: string): MeshError => new MeshError('WIREGUARD_FAILED', {message})

// ---------------------------------------------------------------------------------------------
// Pure parsing and serialising

const HEX_KEY_RE = /^[0-9a-f]{64}$/
const UINT_RE = /^(0|[1-9]\d{0,19})$/
const KEY_RE = /^[a-z_]{1,64}$/

function uint(key: string, value: string, max: number): number {
  const n = UINT_RE.test(value) ? Number(value) : NaN
  if (!(n <= max)) throw fail(`UAPI reply: bad ${key} value`)
  return n
}

const U16 = 65_535
// tx/rx are uint64 in wireguard-go; past 2^53 a Number loses the last digits, as parseDump's did.
const U64 = 2 ** 64 - 1

function hexKeyToBase64(key: string, value: string): string {
  if (!HEX_KEY_RE.test(value)) throw fail(`UAPI reply: bad ${key}`)
  return Buffer.from(value, 'hex').toString('base64')
}

const PORT_RE = /^(0|[1-9]\d{0,4})$/
const port = (text: string): boolean => PORT_RE.test(text) && Number(text) <= U16

/** Whether `host` is IPv6 text as wireguard-go prints it, with an optional %zone. */
function isV6Text(host: string): boolean {
  const pct = host.indexOf('%')
  if (pct < 0) return ipv6ToBytes(host) !== undefined
  return ipv6ToBytes(host.slice(0, pct)) !== undefined && /^[A-Za-z0-9_.-]{1,15}$/.test(host.slice(pct + 1))
}

/** An endpoint of a get reply: `a.b.c.d:port` or `[v6(%zone)]:port`, kept as printed. */
function replyEndpoint(value: string): string {
  const v6 = /^\[([^\]]{2,62})\]:(\d{1,5})$/.exec(value)
  const v4 = v6 ? null : /^([0-9.]{7,15}):(\d{1,5})$/.exec(value)
  const ok = v6
    ? isV6Text(v6[1]!) && port(v6[2]!)
    : v4 !== null && parseIPv4(v4[1]!) !== undefined && port(v4[2]!)
  if (!ok) throw fail('UAPI reply: bad endpoint')
  return value
}

/** An IPv4 or IPv6 prefix (`addr/len`, host bits allowed as wireguard-go allows them), or undefined. */
function checkPrefix(value: string): string | undefined {
  const slash = value.indexOf('/')
  if (slash < 0) return undefined
  const addr = value.slice(0, slash)
  const len = value.slice(slash + 1)
  if (!/^(0|[1-9]\d{0,2})$/.test(len)) return undefined
  if (parseIPv4(addr) !== undefined) return Number(len) <= 32 ? value : undefined
  if (addr.includes('%')) return undefined
  return ipv6ToBytes(addr) !== undefined && Number(len) <= 128 ? value : undefined
}

/** The base64 public key of a 32-byte private key (X25519 base-point multiplication). */
export function publicKeyFromPrivate(secret: Uint8Array): string {
  return Buffer.from(nacl.scalarMult.base(secret)).toString('base64')
}

/**
 * Splits a reply into its lines and checks its last line, `errno=N`: non-zero throws
 * WIREGUARD_FAILED naming `what`. `text` is everything up to (not including) the blank line
 * that ends a reply.
 */
export function replyLines(text: string, what: string): string[] {
  const lines = text.split('\n')
  const last = lines.pop() ?? ''
  const m = /^errno=(-?\d{1,10})$/.exec(last)
  if (!m) throw fail(`UAPI ${what}: malformed reply (no errno line)`)
  const errno = Number(m[1])
  if (errno !== 0) throw fail(`UAPI ${what} failed: errno ${errno}${errnoName(errno)}`)
  return lines
}

const ERRNO_NAMES: Record<number, string> = {
  5: 'EIO',
  22: 'EINVAL',
  71: 'EPROTO',
  98: 'EADDRINUSE',
  55: 'IpcErrorUnknown',
}
const errnoName = (errno: number): string => {
  const name = ERRNO_NAMES[Math.abs(errno)]
  return name ? ` (${name}; wireguard-go's log has the detail)` : ''
}

interface PeerDraft {
  publicKey: string
  endpoint?: string
  allowedIps: string[]
  handshakeSec: number
  handshakeNsec: number
  rxBytes: number
  txBytes: number
  persistentKeepalive: number
  seen: Set<string>
}

function finishPeer(p: PeerDraft): PeerState {
  return {
    publicKey: p.publicKey,
    ...(p.endpoint !== undefined && {endpoint: p.endpoint}),
    allowedIps: p.allowedIps,
    lastHandshakeMs: p.handshakeSec * 1000 + Math.floor(p.handshakeNsec / 1e6),
    rxBytes: p.rxBytes,
    txBytes: p.txBytes,
    ...(p.persistentKeepalive > 0 && {persistentKeepalive: p.persistentKeepalive}),
  }
}

/**
 * Parses the reply to `get=1` (everything before its closing blank line) into what `wg show IF
 * dump` gives (parseDump): base64 keys, the public key derived from the private one ('' for both
 * when no key is set), peers in the order of the reply. Unknown keys are skipped; a malformed
 * line, a bad value, a repeated key or a peer key before the first `public_key` throws
 * WIREGUARD_FAILED. `publicKeyOf` is for a caller that caches the derivation.
 */
export function parseGet(
  text: string,
  publicKeyOf: (secret: Uint8Array) => string = publicKeyFromPrivate,
): WgDevice {
  let privateHex: string | undefined
  let listenPort = 0
  const device = new Set<string>()
  const peers: PeerState[] = []
  const keys = new Set<string>()
  let peer: PeerDraft | undefined
  for (const line of replyLines(text, 'get')) {
    const eq = line.indexOf('=')
    const key = eq > 0 ? line.slice(0, eq) : ''
    if (!KEY_RE.test(key)) throw fail('UAPI reply: malformed line')
    const value = line.slice(eq + 1)
    if (key === 'public_key') {
      if (peer) peers.push(finishPeer(peer))
      const publicKey = hexKeyToBase64(key, value)
      if (keys.has(publicKey)) throw fail('UAPI reply: a peer listed twice')
      keys.add(publicKey)
      peer = {
        publicKey,
        allowedIps: [],
        handshakeSec: 0,
        handshakeNsec: 0,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: 0,
        seen: new Set(),
      }
      continue
    }
    if (!peer) {
      // The device's own lines come before the first peer.
      if (device.has(key)) throw fail(`UAPI reply: ${key} repeated`)
      device.add(key)
      if (key === 'private_key') {
        if (!HEX_KEY_RE.test(value)) throw fail('UAPI reply: bad private_key')
        privateHex = value
      } else if (key === 'listen_port') listenPort = uint(key, value, U16)
      else if (PEER_KEYS.has(key)) throw fail(`UAPI reply: ${key} before any public_key`)
      continue
    }
    if (key !== 'allowed_ip' && PEER_KEYS.has(key)) {
      if (peer.seen.has(key)) throw fail(`UAPI reply: ${key} repeated for a peer`)
      peer.seen.add(key)
    }
    switch (key) {
      case 'endpoint':
        peer.endpoint = replyEndpoint(value)
        break
      case 'allowed_ip': {
        const prefix = checkPrefix(value)
        if (prefix === undefined) throw fail('UAPI reply: bad allowed_ip')
        peer.allowedIps.push(prefix)
        break
      }
      case 'last_handshake_time_sec':
        peer.handshakeSec = uint(key, value, Number.MAX_SAFE_INTEGER / 1000)
        break
      case 'last_handshake_time_nsec':
        peer.handshakeNsec = uint(key, value, 999_999_999)
        break
      case 'rx_bytes':
        peer.rxBytes = uint(key, value, U64)
        break
      case 'tx_bytes':
        peer.txBytes = uint(key, value, U64)
        break
      case 'persistent_keepalive_interval':
        peer.persistentKeepalive = uint(key, value, U16)
        break
      default:
      // preshared_key, protocol_version and whatever a newer wireguard-go adds: not ours.
    }
  }
  if (peer) peers.push(finishPeer(peer))
  let privateKey = ''
  let publicKey = ''
  if (privateHex !== undefined) {
    const secret = Buffer.from(privateHex, 'hex')
    privateKey = secret.toString('base64')
    publicKey = publicKeyOf(new Uint8Array(secret))
  }
  return {privateKey, publicKey, listenPort, peers}
}

/** Peer keys of a get reply that we read (the rest are skipped). */
const PEER_KEYS = new Set([
  'endpoint',
  'allowed_ip',
  'last_handshake_time_sec',
  'last_handshake_time_nsec',
  'rx_bytes',
  'tx_bytes',
  'persistent_keepalive_interval',
])

function keyHex(key: string, what: string): string {
  const raw = isWireGuardKey(key) ? Buffer.from(key, 'base64') : undefined
  // The private key's value never goes into a message.
  if (raw?.length !== 32) throw fail(`invalid ${what}${what === 'private key' ? '' : ` ${key.slice(0, 64)}`}`)
  return raw.toString('hex')
}

function u16(value: number, what: string): string {
  if (!Number.isInteger(value) || value < 0 || value > U16) throw fail(`invalid ${what} ${value}`)
  return String(value)
}

function peerLines(p: PeerEdit): string[] {
  const lines = [`public_key=${keyHex(p.publicKey, 'public key')}`]
  if (p.remove) {
    lines.push('remove=true')
    return lines
  }
  if (p.endpoint !== undefined) {
    const ep = parseEndpoint(p.endpoint)
    if (!ep) throw fail(`invalid endpoint ${JSON.stringify(p.endpoint.slice(0, 80))} for peer ${p.publicKey}`)
    lines.push(`endpoint=${formatEndpoint(ep)}`)
  }
  if (p.persistentKeepalive !== undefined)
    lines.push(`persistent_keepalive_interval=${u16(p.persistentKeepalive, 'persistent keepalive')}`)
  if (p.allowedIps !== undefined) {
    lines.push('replace_allowed_ips=true')
    for (const cidr of p.allowedIps) {
      if (checkPrefix(cidr) === undefined)
        throw fail(`invalid allowed IP ${JSON.stringify(cidr.slice(0, 80))} for peer ${p.publicKey}`)
      lines.push(`allowed_ip=${cidr}`)
    }
  }
  return lines
}

/**
 * The `set=1` request of a transaction, ending with its blank line: the device's settings first,
 * then each peer (added when missing; only the fields given change; `allowedIps` replaces the
 * list; `remove` removes it). Throws WIREGUARD_FAILED for a value wireguard-go would refuse, before
 * anything is sent, naming the peer (never the private key).
 */
export function serialiseSet(tx: WgSet): string {
  const lines = ['set=1']
  if (tx.privateKey !== undefined) lines.push(`private_key=${keyHex(tx.privateKey, 'private key')}`)
  if (tx.listenPort !== undefined) lines.push(`listen_port=${u16(tx.listenPort, 'listen port')}`)
  for (const p of tx.peers ?? []) lines.push(...peerLines(p))
  return `${lines.join('\n')}\n\n`
}

// ---------------------------------------------------------------------------------------------
// The client

export interface UapiClientOptions {
  /** Where the sockets are; /var/run/wireguard by default (tests use a temp dir). */
  dir?: string
  timeoutMs?: number
  maxReplyBytes?: number
  /** For the timeout (tests pass a FakeClock). */
  clock?: Clock
}

export class UapiClient {
  private readonly dir: string
  private readonly timeoutMs: number
  private readonly maxReplyBytes: number
  private readonly clock: Clock
  /**
   * Private key (hex) → public key: one X25519 multiplication costs ≈ 0.5 ms in tweetnacl, too
   * much for every path tick. Bounded (one entry per interface in practice).
   */
  private readonly publicKeys = new Map<string, string>()

  constructor(opts: UapiClientOptions = {}) {
    this.dir = opts.dir ?? UAPI_DIR
    this.timeoutMs = opts.timeoutMs ?? UAPI_TIMEOUT_MS
    this.maxReplyBytes = opts.maxReplyBytes ?? UAPI_MAX_REPLY_BYTES
    this.clock = opts.clock ?? systemClock
  }

  /** The interface's WireGuard state; undefined when no wireguard-go serves `name`. */
  async get(name: string): Promise<WgDevice | undefined> {
    const reply = await this.exchange(name, 'get=1\n\n')
    if (reply === undefined) return undefined
    return parseGet(reply, (secret) => this.publicKeyOf(secret))
  }

  /** Runs one set transaction; throws WIREGUARD_FAILED when it is refused or cannot be sent. */
  async set(name: string, tx: WgSet): Promise<void> {
    const request = serialiseSet(tx)
    const reply = await this.exchange(name, request)
    if (reply === undefined) throw fail(`no wireguard-go serves ${name} (no UAPI socket)`)
    const lines = replyLines(reply, `set on ${name}${describe(tx)}`)
    if (lines.length > 0) throw fail(`UAPI set on ${name}: unexpected reply`)
  }

  private publicKeyOf(secret: Uint8Array): string {
    const hex = Buffer.from(secret).toString('hex')
    let pub = this.publicKeys.get(hex)
    if (pub === undefined) {
      pub = publicKeyFromPrivate(secret)
      if (this.publicKeys.size >= 64) this.publicKeys.clear()
      this.publicKeys.set(hex, pub)
    }
    return pub
  }

  /**
   * Sends `request` and returns the reply up to its closing blank line (not included), or
   * undefined when there is no socket or nothing listens on it (no such interface).
   */
  private exchange(name: string, request: string): Promise<string | undefined> {
    if (!IFNAME_RE.test(name)) return Promise.reject(fail(`invalid interface name ${JSON.stringify(name)}`))
    const file = path.join(this.dir, `${name}.sock`)
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = []
      let size = 0
      let connected = false
      let done = false
      let lastByte = -1
      const sock = net.createConnection({path: file})
      const finish = (err: Error | undefined, value?: string): void => {
        if (done) return
        done = true
        this.clock.clearTimeout(timer)
        sock.destroy()
        if (err) reject(err)
        else resolve(value)
      }
      const timer = this.clock.setTimeout(
        () => finish(fail(`UAPI ${name}: no complete reply within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      )
      sock.on('connect', () => {
        connected = true
      })
      sock.on('data', (chunk: Buffer) => {
        const before = size
        size += chunk.length
        if (size > this.maxReplyBytes)
          return finish(fail(`UAPI ${name}: reply larger than ${this.maxReplyBytes} bytes`))
        // The reply ends at its first blank line: "\n\n", which may straddle two chunks. Only
        // the new chunk is searched, so a big reply costs no more than its length.
        let at: number
        if (lastByte === 0x0a && chunk[0] === 0x0a) at = before - 1
        else {
          const i = chunk.indexOf('\n\n')
          at = i < 0 ? -1 : before + i
        }
        chunks.push(chunk)
        lastByte = chunk[chunk.length - 1] ?? lastByte
        if (at < 0) return
        if (at + 2 !== size) return finish(fail(`UAPI ${name}: data after the end of the reply`))
        // Up to the errno line's own "\n", excluded: the errno line comes out last.
        finish(undefined, Buffer.concat(chunks, size).subarray(0, at).toString('utf8'))
      })
      sock.on('error', (err: NodeJS.ErrnoException) => {
        if (!connected && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) return finish(undefined)
        finish(fail(`UAPI ${name}: ${err.code ?? err.message}`))
      })
      sock.on('close', () => finish(fail(`UAPI ${name}: connection closed before the reply ended`)))
      // One transaction per connection; the half-close tells wireguard-go there is no other.
      sock.end(request)
    })
  }
}

/** The peers a set names, for its error message (never the private key). */
function describe(tx: WgSet): string {
  const peers = tx.peers ?? []
  const what: string[] = []
  if (tx.privateKey !== undefined) what.push('private key')
  if (tx.listenPort !== undefined) what.push(`listen port ${tx.listenPort}`)
  if (peers.length === 1) what.push(`peer ${peers[0]!.publicKey}`)
  else if (peers.length > 1) what.push(`${peers.length} peers`)
  return what.length > 0 ? ` (${what.join(', ')})` : ''
}
