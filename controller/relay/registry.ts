/**
 * Relays as the controller sees them: the relays that heartbeat (stand-alone ones with a relay
 * key, and this replica's own built-in relay when it has a URL), and the REST routes stand-alone
 * relays call (shared/relay/control.ts).
 *
 * Everything that must be shared lives in the database (migration 0007, rules in
 * controller/domain/relays.ts), so any controller replica on one PostgreSQL answers alike:
 * - relay keys (created through the admin API, `mesh relay key create`, stored hashed);
 * - the relays table: one row per relay, pushed forward by every heartbeat (whichever replica
 *   gets it) to expire `livenessMs` later (3 beats by default). A relay is listed while its row
 *   has not expired; one that stops beating leaves the list within its TTL on every replica;
 * - the relay-mesh token (a settings row made once), which every relay presents on mesh links.
 * This registry keeps a copy of the live list, reloaded every beat, after each heartbeat it
 * answers, and when told the table changed (refresh(): PostgreSQL's mesh_relays NOTIFY, see
 * controller/main.ts); `onChange` fires when the list changed.
 *
 * DATA_DIR/relay-keys.json, where older versions kept relay keys, is read once at start and its
 * keys imported (importRelayKeyFile); it is not read again.
 *
 * Removals: every node change that leaves a node not active is queued for each relay that beats
 * to this replica and handed out with its next beat here (bounded; see RELAY_MAX_GONE). Every
 * replica hears every node change (the change feed), so a relay that beats through a load
 * balancer hears of a removal from whichever replica it reaches next.
 *
 * Visibility (ACL policy, issue 10): RELAY_API.visibility answers who may see whom in a network;
 * a policy change (tenant) or a node change that may move a node's class (network) is queued
 * for each relay like a removal and handed out with its next beat, so a stand-alone relay's
 * answers are at most one beat stale. A relay new to this replica is told everything is stale.
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
  RelayVisibilityRequestSchema,
  type RelayHeartbeatResponse,
  type RelayNodeRef,
  type RelayVerifyNodeResponse,
  type RelayVisibility,
} from '../../shared/relay/control.js'
import {hashSecret} from '../auth/secrets.js'
import type {ImportedRelayKey} from '../domain/relays.js'
import type {Writes} from '../domain/writes.js'
import type {RelayRecord, Store} from '../store/store.js'
import {systemContext} from '../context.js'

/** Where mesh versions before 0007 kept relay keys; imported once at start. */
export const RELAY_KEYS_FILE = 'relay-keys.json'

/**
 * Imports DATA_DIR/relay-keys.json into the database, if the file exists (keys already there are
 * skipped, so every start may do it). Returns the ids imported. The file is left in place: an
 * older binary rolled back to still finds it.
 */
export async function importRelayKeyFile(
  dataDir: string,
  writes: Pick<Writes, 'importRelayKeys'>,
  clock: Clock,
): Promise<string[]> {
  const file = path.join(path.resolve(dataDir), RELAY_KEYS_FILE)
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    data = undefined
  }
  if (!Array.isArray(data)) throw new MeshError('CONFIG_FILE_INVALID', {message: `${file}: not a list`})
  const keys = data.filter(
    (r): r is ImportedRelayKey =>
      typeof r === 'object' &&
      r !== null &&
      typeof (r as ImportedRelayKey).id === 'string' &&
      typeof (r as ImportedRelayKey).hash === 'string' &&
      /^[0-9a-f]{64}$/.test((r as ImportedRelayKey).hash) &&
      typeof (r as ImportedRelayKey).region === 'string' &&
      /^[a-z0-9][a-z0-9-]{0,63}$/.test((r as ImportedRelayKey).region),
  )
  const clean = keys.map((k) => ({
    id: k.id.slice(0, 100),
    region: k.region,
    hash: k.hash,
    createdAt:
      typeof k.createdAt === 'string' && !Number.isNaN(Date.parse(k.createdAt))
        ? k.createdAt
        : new Date(clock.now()).toISOString(),
  }))
  return clean.length === 0 ? [] : writes.importRelayKeys(clean, systemContext(clock))
}

/** The built-in relay of this replica, as other relays reach it. */
export interface OwnRelay {
  readonly url: string
  readonly region: string
}

export interface RelayRegistryOptions {
  readonly store: Pick<Store, 'relayKeyByHash' | 'liveRelays'>
  readonly writes: Pick<Writes, 'relayHeartbeat' | 'sweepRelays' | 'leaveRelays' | 'relayMeshSecret'>
  readonly clock: Clock
  /** Who a node credential belongs to, and whether the node is active. */
  readonly authenticateNode: (credential: string) => Promise<RelayVerifyNodeResponse | undefined>
  /** This replica's built-in relay, registered like a relay that beats; none: not registered. */
  readonly own?: OwnRelay | undefined
  /** Relays beat this often (ms; default 5,000). */
  readonly heartbeatMs?: number | undefined
  /** A relay unheard of this long is no longer listed (ms; default 3 beats). */
  readonly livenessMs?: number | undefined
  /** Called when the list of live relays (any kind) changed. */
  readonly onChange?: (live: readonly RelayRecord[]) => void
  /** Where failed background beats and reloads are told. */
  readonly log?: {warn(obj: object, msg: string): void}
  /**
   * Who may see whom in a network under its tenant's ACL policy, for stand-alone relays
   * (RELAY_API.visibility); none: the route answers `unknown` (relays decide as without a policy).
   */
  readonly visibility?: ((networkId: string) => Promise<RelayVisibility>) | undefined
}

/** Removals not handed out yet, per relay that beats to this replica. */
interface Beater {
  lastBeat: number
  gone: RelayNodeRef[]
  /** Tenants (policy changed) and networks (a node's class may have moved) since the last beat. */
  staleTenants: Set<string>
  staleNetworks: Set<string>
  /** More than RELAY_MAX_GONE of either: the relay drops every answer it holds. */
  staleAll: boolean
}

/** Removals queued per relay at most; beyond that the oldest go (a relay that far behind is dead). */
const MAX_QUEUED_GONE = 100_000

export class RelayRegistry {
  readonly heartbeatMs: number
  readonly livenessMs: number
  private token = ''
  /** Relays that beat to this replica, by URL (for their removal queues). */
  private readonly beaters = new Map<string, Beater>()
  private stopTimer: () => void = () => undefined
  private all: readonly RelayRecord[] = []
  private listed: RelayInfo[] = []
  private reloading: Promise<void> | undefined
  private reloadAgain = false
  private closed = false
  private readonly listeners = new Set<() => void>()
  /** The beat running now (resolved when none). */
  private ticking: Promise<void> = Promise.resolve()
  private tickRunning = false
  private tickAgain = false

  constructor(private readonly opts: RelayRegistryOptions) {
    this.heartbeatMs = opts.heartbeatMs ?? 5_000
    this.livenessMs = opts.livenessMs ?? 3 * this.heartbeatMs
  }

  /** What relays present on mesh links: one secret for the deployment, from the database. */
  get meshToken(): string {
    return this.token
  }

  /** Loads (or makes, on the first replica ever) the mesh token, registers the own relay, lists. */
  async start(): Promise<void> {
    const fresh = `mmesh_${randomBytes(24).toString('base64url')}`
    this.token = await this.opts.writes.relayMeshSecret(fresh, this.iso())
    await this.beatOwn()
    await this.reload()
    this.stopTimer = every(this.opts.clock, this.heartbeatMs, () => {
      // One beat at a time; beats due while one runs (a slow database) make one more, not a queue.
      if (this.tickRunning) {
        this.tickAgain = true
        return
      }
      this.tickRunning = true
      this.ticking = (async () => {
        try {
          do {
            this.tickAgain = false
            await this.tick()
          } while (this.tickAgain && !this.closed)
        } finally {
          this.tickRunning = false
        }
      })()
    })
  }

  /** Resolves when every beat started so far has finished its store work (for tests). */
  async idle(): Promise<void> {
    for (let seen: Promise<void> | undefined; seen !== this.ticking;) {
      seen = this.ticking
      await seen
    }
    await this.reloading
  }

  private iso(offsetMs = 0): string {
    return new Date(this.opts.clock.now() + offsetMs).toISOString()
  }

  private async beatOwn(): Promise<void> {
    const own = this.opts.own
    if (!own) return
    await this.opts.writes.relayHeartbeat({
      url: own.url,
      kind: 'builtin',
      region: own.region,
      keyId: null,
      connected: 0,
      at: this.iso(),
      expiresAt: this.iso(this.livenessMs),
    })
  }

  /** Every beat: the own relay's row moves forward, expired rows go, the list is reloaded. */
  private async tick(): Promise<void> {
    try {
      await this.beatOwn()
      await this.opts.writes.sweepRelays(this.iso())
    } catch (err) {
      this.opts.log?.warn({err}, 'relay registry: beat failed')
    }
    const cutoff = this.opts.clock.now() - this.livenessMs
    for (const [url, b] of this.beaters) if (b.lastBeat < cutoff) this.beaters.delete(url)
    await this.refresh()
  }

  /**
   * Reads the live relays again; onChange fires when they changed. Calls while a read runs make
   * one more read after it (a change committed meanwhile is never missed).
   */
  async refresh(): Promise<void> {
    if (this.closed) return
    if (this.reloading) {
      this.reloadAgain = true
      return this.reloading
    }
    this.reloading = (async () => {
      try {
        do {
          this.reloadAgain = false
          await this.reload()
        } while (this.reloadAgain && !this.closed)
      } catch (err) {
        this.opts.log?.warn({err}, 'relay registry: reading the relay list failed')
      } finally {
        this.reloading = undefined
      }
    })()
    return this.reloading
  }

  private async reload(): Promise<void> {
    const all = await this.opts.store.liveRelays(this.iso())
    const json = JSON.stringify(all.map((r) => [r.url, r.kind, r.region]))
    if (json === JSON.stringify(this.all.map((r) => [r.url, r.kind, r.region]))) {
      this.all = all
      return
    }
    this.all = all
    this.listed = all.filter((r) => r.kind === 'standalone').map((r) => ({url: r.url, region: r.region}))
    if (this.closed) return
    this.opts.onChange?.(all)
    for (const fn of this.listeners) fn()
  }

  /** Runs `fn` after each change of the live relays (any kind); returns the unsubscribe. */
  subscribe(fn: () => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /** The live stand-alone relays, as full netmaps list them (after the own built-in relay). */
  live(): RelayInfo[] {
    return this.listed
  }

  /** Every live relay, built-in ones of other replicas included (the mesh dials from this). */
  relays(): readonly RelayRecord[] {
    return this.all
  }

  /** A tenant's policy changed: every relay that beats here refetches its networks' visibility. */
  policyChanged(tenantId: string): void {
    for (const r of this.beaters.values()) stale(r, r.staleTenants, tenantId)
  }

  /** A node of a network came, went or may have changed class: as policyChanged, one network. */
  networkChanged(networkId: string): void {
    for (const r of this.beaters.values()) stale(r, r.staleNetworks, networkId)
  }

  /** A node stopped being active: every relay that beats here hears of it with its next beat. */
  nodeGone(ref: RelayNodeRef): void {
    for (const r of this.beaters.values()) {
      r.gone.push(ref)
      if (r.gone.length > MAX_QUEUED_GONE) r.gone.splice(0, r.gone.length - MAX_QUEUED_GONE)
    }
  }

  private async relayKey(bearer: string | undefined): Promise<{id: string; region: string}> {
    const rec =
      bearer === undefined || !bearer.startsWith(RELAY_KEY_PREFIX) || bearer.length > 200
        ? undefined
        : await this.opts.store.relayKeyByHash(hashSecret(bearer))
    if (!rec || rec.revokedAt !== null)
      throw new MeshError('UNAUTHENTICATED', {message: 'the relay key is not valid'})
    return rec
  }

  async heartbeat(bearer: string | undefined, body: unknown): Promise<RelayHeartbeatResponse> {
    const key = await this.relayKey(bearer)
    const req = parse(RelayHeartbeatRequestSchema, body)
    if (req.region !== undefined && req.region !== key.region)
      throw new MeshError('CONFIG_INVALID', {
        message: `--region ${req.region}: this relay key is for region ${key.region}`,
      })
    const url = req.url.replace(/\/+$/, '')
    if (url === this.opts.own?.url)
      throw new MeshError('CONFIG_INVALID', {message: `${url} is a controller's built-in relay`})
    await this.opts.writes.relayHeartbeat({
      url,
      kind: 'standalone',
      region: key.region,
      keyId: key.id,
      connected: req.connected,
      at: this.iso(),
      expiresAt: this.iso(this.livenessMs),
    })
    let b = this.beaters.get(url)
    // A relay new to this replica may have missed changes told to another one: all stale.
    if (!b)
      this.beaters.set(
        url,
        (b = {lastBeat: 0, gone: [], staleTenants: new Set(), staleNetworks: new Set(), staleAll: true}),
      )
    b.lastBeat = this.opts.clock.now()
    const gone = b.gone.splice(0, RELAY_MAX_GONE)
    const visibility = {tenants: [...b.staleTenants], networks: [...b.staleNetworks], all: b.staleAll}
    b.staleTenants.clear()
    b.staleNetworks.clear()
    b.staleAll = false
    await this.refresh()
    return {
      region: key.region,
      gone,
      relays: this.listed.filter((x) => x.url !== url).map((x) => ({url: x.url!, region: x.region})),
      meshToken: this.token,
      heartbeatMs: this.heartbeatMs,
      visibility,
    }
  }

  async visibility(bearer: string | undefined, body: unknown): Promise<RelayVisibility> {
    await this.relayKey(bearer)
    const {networkId} = parse(RelayVisibilityRequestSchema, body)
    return this.opts.visibility
      ? this.opts.visibility(networkId)
      : {mode: 'unknown', networkId, tenantId: null}
  }

  async verifyNode(bearer: string | undefined, body: unknown): Promise<RelayVerifyNodeResponse> {
    await this.relayKey(bearer)
    const {credential} = parse(RelayVerifyNodeRequestSchema, body)
    const node = await this.opts.authenticateNode(credential)
    if (!node) throw new MeshError('NODE_CREDENTIAL_INVALID')
    return node
  }

  /** Stops beating; the own relay's row is deleted, so it leaves every replica's list at once. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.stopTimer()
    await this.ticking
    await this.reloading
    const own = this.opts.own
    if (own) await this.opts.writes.leaveRelays(own.url).catch(() => undefined)
  }
}

function stale(r: Beater, set: Set<string>, id: string): void {
  if (r.staleAll) return
  set.add(id)
  if (set.size > RELAY_MAX_GONE) {
    r.staleAll = true
    r.staleTenants.clear()
    r.staleNetworks.clear()
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
  app.post(RELAY_API.visibility, async (req) => registry.visibility(bearer(req), req.body))
}
