/**
 * Stand-alone relays as the controller sees them: the relay keys an admin made, the relays that
 * heartbeat with one, and the REST routes they call (shared/relay/control.ts).
 *
 * Relay keys are a controller setting, not a table: DATA_DIR/relay-keys.json (mode 0600), each
 * key stored as its SHA-256 hash like every other secret (controller/auth/secrets.ts), written
 * by `mesh relay key create` on the controller's host and re-read when the file changes. A
 * handful of long-lived keys per deployment needs no migration, and the relay code stays out of
 * the store. (Replicas on PostgreSQL each read their own data dir: give them the same file.)
 *
 * Liveness: a relay is listed in full netmaps (nat.relays, after the controller's built-in one)
 * while its last heartbeat is younger than `livenessMs` (3 beats by default); the sweep that
 * drops it runs every beat. Relays are keyed by URL: several relays may share a region's key.
 *
 * Removals: every node change that leaves a node not active is queued for each live relay and
 * handed out with its next beat (bounded; see RELAY_MAX_GONE), so a relay learns of removals in
 * at most one heartbeat interval, whatever its number of nodes.
 */
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type {FastifyInstance, FastifyRequest} from 'fastify'
import type {z} from 'zod'
import {every, type Clock} from '../../shared/clock.js'
import {MeshError} from '../../shared/errors.js'
import type {RelayInfo} from '../../shared/protocol/netmap.js'
import {
  RELAY_API,
  RELAY_KEY_PREFIX,
  RELAY_MAX_GONE,
  RelayHeartbeatRequestSchema,
  RelayVerifyNodeRequestSchema,
  type RelayHeartbeatResponse,
  type RelayNodeRef,
  type RelayVerifyNodeResponse,
} from '../../shared/relay/control.js'
import {hashSecret, newId} from '../auth/secrets.js'

export const RELAY_KEYS_FILE = 'relay-keys.json'

export interface RelayKeyRecord {
  readonly id: string
  readonly region: string
  /** SHA-256 of the key, hex. */
  readonly hash: string
  readonly createdAt: string
}

const REGION_RE = /^[a-z0-9][a-z0-9-]{0,63}$/

/** Adds a relay key to DATA_DIR/relay-keys.json; the key itself is returned once, never stored. */
export function createRelayKey(opts: {dataDir: string; region: string; now?: Date}): {
  id: string
  key: string
  region: string
  createdAt: string
} {
  if (!REGION_RE.test(opts.region))
    throw new MeshError('INVALID_ARGUMENT', {
      message: `--region: lower-case letters, digits and dashes (at most 64), got ${JSON.stringify(opts.region)}`,
    })
  const file = path.join(path.resolve(opts.dataDir), RELAY_KEYS_FILE)
  fs.mkdirSync(path.dirname(file), {recursive: true, mode: 0o700})
  const keys = readKeys(file)
  const key = RELAY_KEY_PREFIX + randomBytes(32).toString('base64url')
  const rec: RelayKeyRecord = {
    id: newId('rk'),
    region: opts.region,
    hash: hashSecret(key),
    createdAt: (opts.now ?? new Date()).toISOString(),
  }
  const tmp = `${file}.${process.pid}.tmp`
  fs.writeFileSync(tmp, `${JSON.stringify([...keys, rec], null, 2)}\n`, {mode: 0o600})
  fs.renameSync(tmp, file)
  return {id: rec.id, key, region: rec.region, createdAt: rec.createdAt}
}

function readKeys(file: string): RelayKeyRecord[] {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const data: unknown = JSON.parse(text)
  if (!Array.isArray(data)) throw new MeshError('CONFIG_FILE_INVALID', {message: `${file}: not a list`})
  return data.filter(
    (r): r is RelayKeyRecord =>
      typeof r === 'object' &&
      r !== null &&
      typeof (r as RelayKeyRecord).id === 'string' &&
      typeof (r as RelayKeyRecord).hash === 'string' &&
      typeof (r as RelayKeyRecord).region === 'string',
  )
}

/** The relay keys of a data dir, re-read when the file's mtime or size changes. */
export class RelayKeyFile {
  private stamp = ''
  private byHash = new Map<string, RelayKeyRecord>()

  constructor(private readonly dataDir: string) {}

  lookup(key: string): RelayKeyRecord | undefined {
    if (!key.startsWith(RELAY_KEY_PREFIX) || key.length > 200) return undefined
    const file = path.join(this.dataDir, RELAY_KEYS_FILE)
    let stamp: string
    try {
      const st = fs.statSync(file)
      stamp = `${st.mtimeMs}:${st.size}`
    } catch {
      stamp = 'none'
    }
    if (stamp !== this.stamp) {
      this.byHash = new Map(stamp === 'none' ? [] : readKeys(file).map((r) => [r.hash, r]))
      this.stamp = stamp
    }
    return this.byHash.get(hashSecret(key))
  }
}

export interface RelayRegistryOptions {
  readonly keys: {lookup(key: string): RelayKeyRecord | undefined}
  readonly clock: Clock
  /** Who a node credential belongs to, and whether the node is active. */
  readonly authenticateNode: (credential: string) => Promise<RelayVerifyNodeResponse | undefined>
  /** Relays beat this often (ms; default 5,000). */
  readonly heartbeatMs?: number
  /** A relay unheard of this long is no longer listed (ms; default 3 beats). */
  readonly livenessMs?: number
  /** Called when the list of live relays changes. */
  readonly onChange?: (live: RelayInfo[]) => void
}

interface LiveRelay {
  readonly url: string
  region: string
  keyId: string
  lastBeat: number
  connected: number
  /** Removals not handed out yet. */
  gone: RelayNodeRef[]
}

/** Removals queued per relay at most; beyond that the oldest go (a relay that far behind is dead). */
const MAX_QUEUED_GONE = 100_000

export class RelayRegistry {
  readonly heartbeatMs: number
  readonly livenessMs: number
  /** What the built-in relay presents on mesh links; new at every start. */
  readonly meshToken = `mmesh_${randomBytes(24).toString('base64url')}`
  private readonly relays = new Map<string, LiveRelay>()
  private readonly stopSweep: () => void
  private listed: RelayInfo[] = []

  constructor(private readonly opts: RelayRegistryOptions) {
    this.heartbeatMs = opts.heartbeatMs ?? 5_000
    this.livenessMs = opts.livenessMs ?? 3 * this.heartbeatMs
    this.stopSweep = every(opts.clock, this.heartbeatMs, () => this.sweep())
  }

  /** The live stand-alone relays, as full netmaps list them. */
  live(): RelayInfo[] {
    return this.listed
  }

  /** A node stopped being active: every live relay hears of it with its next beat. */
  nodeGone(ref: RelayNodeRef): void {
    for (const r of this.relays.values()) {
      r.gone.push(ref)
      if (r.gone.length > MAX_QUEUED_GONE) r.gone.splice(0, r.gone.length - MAX_QUEUED_GONE)
    }
  }

  private relayKey(bearer: string | undefined): RelayKeyRecord {
    const rec = bearer === undefined ? undefined : this.opts.keys.lookup(bearer)
    if (!rec) throw new MeshError('UNAUTHENTICATED', {message: 'the relay key is not valid'})
    return rec
  }

  heartbeat(bearer: string | undefined, body: unknown): RelayHeartbeatResponse {
    const key = this.relayKey(bearer)
    const req = parse(RelayHeartbeatRequestSchema, body)
    if (req.region !== undefined && req.region !== key.region)
      throw new MeshError('CONFIG_INVALID', {
        message: `--region ${req.region}: this relay key is for region ${key.region}`,
      })
    const url = req.url.replace(/\/+$/, '')
    let r = this.relays.get(url)
    if (!r) {
      r = {url, region: key.region, keyId: key.id, lastBeat: 0, connected: 0, gone: []}
      this.relays.set(url, r)
    }
    r.region = key.region
    r.keyId = key.id
    r.lastBeat = this.opts.clock.now()
    r.connected = req.connected
    const gone = r.gone.splice(0, RELAY_MAX_GONE)
    this.relist()
    return {
      region: r.region,
      gone,
      relays: this.listed.filter((x) => x.url !== url).map((x) => ({url: x.url!, region: x.region})),
      meshToken: this.meshToken,
      heartbeatMs: this.heartbeatMs,
    }
  }

  async verifyNode(bearer: string | undefined, body: unknown): Promise<RelayVerifyNodeResponse> {
    this.relayKey(bearer)
    const {credential} = parse(RelayVerifyNodeRequestSchema, body)
    const node = await this.opts.authenticateNode(credential)
    if (!node) throw new MeshError('NODE_CREDENTIAL_INVALID')
    return node
  }

  private sweep(): void {
    const cutoff = this.opts.clock.now() - this.livenessMs
    let changed = false
    for (const [url, r] of this.relays)
      if (r.lastBeat < cutoff) {
        this.relays.delete(url)
        changed = true
      }
    if (changed) this.relist()
  }

  private relist(): void {
    const next: RelayInfo[] = [...this.relays.values()]
      .sort((a, b) => (a.region === b.region ? (a.url < b.url ? -1 : 1) : a.region < b.region ? -1 : 1))
      .map((r) => ({url: r.url, region: r.region}))
    if (JSON.stringify(next) === JSON.stringify(this.listed)) return
    this.listed = next
    this.opts.onChange?.(next)
  }

  close(): void {
    this.stopSweep()
  }
}

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body)
  if (r.success) return r.data
  const message = r.error.issues
    .slice(0, 3)
    .map((i) => `${i.path.map(String).join('.') || 'body'}: ${i.message}`)
    .join('; ')
  throw new MeshError('VALIDATION_FAILED', {message})
}

const bearer = (req: FastifyRequest): string | undefined => {
  const h = req.headers.authorization
  return typeof h === 'string' ? /^Bearer (\S{1,300})$/i.exec(h)?.[1] : undefined
}

/** The REST routes relays call (relay key in `Authorization: Bearer`). */
export function registerRelayRoutes(app: FastifyInstance, registry: RelayRegistry): void {
  app.post(RELAY_API.heartbeat, async (req) => registry.heartbeat(bearer(req), req.body))
  app.post(RELAY_API.verifyNode, async (req) => registry.verifyNode(bearer(req), req.body))
}
