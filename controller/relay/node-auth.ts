/**
 * How a stand-alone relay knows who a node is: it asks the controller (POST
 * RELAY_API.verifyNode with its relay key) and keeps the answer briefly.
 *
 * Cache: by the SHA-256 of the credential (the credential itself is never kept), a valid answer
 * for `ttlMs` (10 s), an invalid one for `negativeTtlMs` (2 s, so a flood of bad credentials
 * costs the controller at most one call per credential per 2 s), at most `maxEntries` (the
 * oldest go first). Calls for one credential in flight are shared. forget(nodeId) drops a node
 * at once (its removal reached the relay), so a removed node cannot reconnect from the cache.
 */
import {createHash} from 'node:crypto'
import {MeshError} from '../../shared/errors.js'
import {
  RELAY_API,
  RelayVerifyNodeResponseSchema,
  type RelayVerifyNodeResponse,
} from '../../shared/relay/control.js'
import type {RelayIdentity} from './server.js'

export interface NodeAuthOptions {
  readonly controller: string
  readonly relayKey: string
  readonly now?: () => number
  readonly ttlMs?: number
  readonly negativeTtlMs?: number
  readonly maxEntries?: number
  /** Per call (ms; default 5,000). */
  readonly timeoutMs?: number
}

interface Entry {
  readonly at: number
  readonly node: RelayVerifyNodeResponse | undefined
}

export class ControllerNodeAuth {
  private readonly cache = new Map<string, Entry>()
  private readonly inflight = new Map<string, Promise<RelayVerifyNodeResponse | undefined>>()
  private readonly now: () => number
  private readonly url: string
  /** Calls made to the controller (tests, metrics). */
  calls = 0

  constructor(private readonly opts: NodeAuthOptions) {
    this.now = opts.now ?? Date.now
    this.url = new URL(RELAY_API.verifyNode, opts.controller).toString()
  }

  /** For RelayServerOptions.authenticate: the active node a credential belongs to. */
  readonly authenticate = async (credential: string): Promise<RelayIdentity | undefined> => {
    const node = await this.lookup(credential)
    return node?.active ? {nodeId: node.nodeId, networkId: node.networkId} : undefined
  }

  async lookup(credential: string): Promise<RelayVerifyNodeResponse | undefined> {
    const k = createHash('sha256').update(credential).digest('base64url')
    const hit = this.cache.get(k)
    const ttl = hit?.node ? (this.opts.ttlMs ?? 10_000) : (this.opts.negativeTtlMs ?? 2_000)
    if (hit && this.now() - hit.at < ttl) return hit.node
    let p = this.inflight.get(k)
    if (!p) {
      p = this.ask(credential).finally(() => this.inflight.delete(k))
      this.inflight.set(k, p)
      void p.then(
        (node) => {
          this.cache.delete(k)
          this.cache.set(k, {at: this.now(), node})
          const max = this.opts.maxEntries ?? 10_000
          for (const old of this.cache.keys()) {
            if (this.cache.size <= max) break
            this.cache.delete(old)
          }
        },
        () => undefined,
      )
    }
    return p
  }

  /** Drops a node's cached answers (it was removed or disabled). */
  forget(nodeId: string): void {
    for (const [k, e] of this.cache) if (e.node?.nodeId === nodeId) this.cache.delete(k)
  }

  get size(): number {
    return this.cache.size
  }

  private async ask(credential: string): Promise<RelayVerifyNodeResponse | undefined> {
    this.calls++
    const res = await fetch(this.url, {
      method: 'POST',
      headers: {authorization: `Bearer ${this.opts.relayKey}`, 'content-type': 'application/json'},
      body: JSON.stringify({credential}),
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 5_000),
      redirect: 'error',
    })
    const body: unknown = await res.json().catch(() => undefined)
    if (res.status === 401) {
      const code = (body as {error?: {code?: unknown}} | undefined)?.error?.code
      if (code === 'NODE_CREDENTIAL_INVALID') return undefined
    }
    if (!res.ok) throw MeshError.fromWire(body, res.status)
    return RelayVerifyNodeResponseSchema.parse(body)
  }
}
