// Simulated nodes for the controller benchmark: one netmap WebSocket each, speaking the real
// protocol (shared/protocol/netmap.ts) and reporting as meshd does (daemon/backend.ts report() +
// daemon/netmap/peer-report.ts), without meshd's per-node state, so 10,000 of them fit in one
// process:
//  - a session's first report carries `reset`, the node's endpoints and the peers it has a
//    handshake with (meshd reports only online peers, and an offline entry once when one goes);
//    in frames of REPORT_LIMITS.peersPerFrame (500), at most framesPerReport (10) per report;
//  - later reports carry only what changed (PeerReporter): now and then one active peer whose
//    latency moved beyond jitter; otherwise a report is the heartbeat `{"type":"report"}`;
//  - `active` peers of each node (ring neighbours, so both sides of a pair report each other)
//    are online, one in four relayed (endpoint a loopback socket, as meshd's relay shim), with a
//    latency.
//  - view 'all' reports as meshd did before 2026-12-03, for comparison: every WireGuard peer
//    (every peer of the netmap), the inactive ones offline with the endpoint WireGuard was
//    configured with, and each peer added since as a new offline entry.
// No traffic goes anywhere but the controller on loopback: endpoints are TEST-NET-2 strings.
import {gunzipSync} from 'node:zlib'
import WebSocket from 'ws'

export const REPORT_LIMITS = {peersPerFrame: 500, framesPerReport: 10}
export const REPORT_INTERVAL_MS = 10_000

/** The endpoint node `i` registers and reports (a string only: nothing is sent to it). */
export const endpointOf = (i) => `198.51.100.${(i % 250) + 1}:${40000 + (i % 20000)}`

/** Full jitter between half and all of the exponential delay, as daemon/netmap/sync.ts. */
const backoff = (attempt) => {
  const ms = Math.min(500 * 2 ** attempt, 10_000)
  return ms / 2 + Math.random() * (ms / 2)
}

const TYPE_RE = /"type"\s*:\s*"(\w+)"/
const VERSION_RE = /"version"\s*:\s*(\d+)/

/**
 * The shared part of all simulated nodes of one network: every node's id in registration order
 * (index = node number), and the bench's knobs.
 */
export class Swarm {
  constructor({ids, active = 8, latencyChurn = 0.1, view = 'active', gzip = true}) {
    this.ids = ids
    this.active = Math.min(active, ids.length - 1)
    this.latencyChurn = latencyChurn
    /**
     * 'active': only the peers with a handshake, as meshd reports them.
     * 'all': every peer of the netmap, as meshd reported before 2026-12-03 (for comparison).
     */
    this.view = view
    /** Ask for gzipped full maps (?encoding=gzip), as meshd does. */
    this.gzip = gzip
    /** Frames and bytes sent in reports, for the table's notes. */
    this.sent = {frames: 0, bytes: 0, entries: 0}
    /** Why connection attempts failed (error code or message -> count), for the notes. */
    this.failures = new Map()
    /** Sessions the controller closed after their map (close code -> count). */
    this.closes = new Map()
    /** Whether a node whose session closes reconnects by itself (meshd does; off during restarts). */
    this.reconnect = false
    /** Set (to the reason) when the bench gives up: connects stop retrying. */
    this.aborted = null
  }

  /** Is peer `p` one of node `i`'s active peers (a ring neighbour within active/2)? */
  isActive(i, p) {
    const n = this.ids.length
    const d = Math.min((p - i + n) % n, (i - p + n) % n)
    return d >= 1 && d <= Math.ceil(this.active / 2)
  }

  /** Node i's entry for peer p, as meshd reports it. */
  entry(i, p) {
    const id = this.ids[p]
    if (!this.isActive(i, p)) return {id, online: false, endpoint: endpointOf(p), path: 'none'}
    const relayed = (i + p) % 4 === 0
    return {
      id,
      online: true,
      endpoint: relayed ? `127.0.0.1:${41000 + (p % 1000)}` : endpointOf(p),
      path: relayed ? 'relay' : 'direct',
      latencyMs: 20 + ((i + p) % 40),
    }
  }
}

export class SimNode {
  /**
   * @param swarm   the shared Swarm
   * @param index   this node's number (its id is swarm.ids[index])
   * @param credential its netmap credential
   * @param base    ws:// URL of the netmap endpoint of its replica
   */
  constructor(swarm, index, credential, base) {
    this.swarm = swarm
    this.index = index
    this.credential = credential
    this.base = base
    this.ws = null
    this.version = undefined
    /** The first frame of the current session arrived (full map, or a delta when resumed). */
    this.hasMap = false
    this.firstFrame = {type: '', bytes: 0}
    /** Reports sent this session; report k of the initial ones carries chunk k of the view. */
    this.reportsSent = 0
    this.nextReportAt = Infinity
    /** Ids of peers added since the session's view: they go in the next report, once. */
    this.newPeers = []
    /** Set by the bench while it times a change: a Buffer to look for, and what it found. */
    this.watch = null
    this.hit = null
    this.otherFrames = 0
    /** Called once with the first frame of each session as a Buffer (for the cost notes). */
    this.onFirst = null
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN
  }

  /**
   * Opens a session (resuming from `version` when given) and resolves when its first frame is
   * in; retries with meshd's backoff on failure, `attempts` times at most, and never past
   * `deadline` (performance.now() ms). Resolves {attempts, type}; rejects with the last error.
   */
  connect({version, deadline, attempts = 30}) {
    return new Promise((resolve, reject) => {
      let attempt = 0
      let finished = false
      // The deadline holds for a session that opened but whose map never comes, too.
      const timer = setTimeout(
        () => {
          if (finished) return
          finished = true
          this.ws?.removeAllListeners('message')
          this.ws?.terminate()
          reject(new Error('no map before the deadline'))
        },
        Math.max(0, deadline - performance.now()),
      )
      const done = (fn, value) => {
        if (finished) return
        finished = true
        clearTimeout(timer)
        fn(value)
      }
      resolve = done.bind(null, resolve)
      reject = done.bind(null, reject)
      const tryOnce = () => {
        if (finished) return
        if (this.swarm.aborted) return reject(new Error(this.swarm.aborted))
        if (performance.now() > deadline)
          return reject(new Error(`node ${this.index}: no map before the deadline`))
        const query = [
          ...(version === undefined ? [] : [`version=${version}`]),
          ...(this.swarm.gzip ? ['encoding=gzip'] : []),
        ]
        const url = query.length === 0 ? this.base : `${this.base}?${query.join('&')}`
        const ws = new WebSocket(url, {
          headers: {authorization: `Bearer ${this.credential}`},
          perMessageDeflate: false,
          maxPayload: 1024 * 1024 * 1024,
          skipUTF8Validation: true,
          // As daemon/netmap/sync.ts: a controller that does not answer in 10 s is tried again.
          handshakeTimeout: 10_000,
        })
        this.ws = ws
        this.hasMap = false
        let settled = false
        const fail = (err) => {
          if (settled) return
          settled = true
          const why = String(err?.code ?? err?.message ?? err).slice(0, 60)
          this.swarm.failures.set(why, (this.swarm.failures.get(why) ?? 0) + 1)
          ws.removeAllListeners('message')
          ws.terminate()
          if (++attempt >= attempts) return reject(err)
          setTimeout(tryOnce, backoff(attempt - 1))
        }
        ws.once('error', (err) => fail(err))
        ws.once('close', (code) => {
          if (!settled) return fail(new Error(`closed with ${code} before the first frame`))
          if (this.ws !== ws) return
          this.ws = null
          this.hasMap = false
          // The controller closed a session that had its map: counted, and meshd reconnects.
          const why = `close ${code}`
          this.swarm.closes.set(why, (this.swarm.closes.get(why) ?? 0) + 1)
          if (this.swarm.reconnect) this.reconnect()
        })
        ws.on('message', (data) => {
          if (!settled) {
            settled = true
            // A gzipped full map starts with a stored member (controller/api/netmap-gzip.ts):
            // its head is readable at offset 15 without inflating the 2 MB behind it.
            const gz = data[0] === 0x1f && data[1] === 0x8b
            const head = data.subarray(gz ? 15 : 0, (gz ? 15 : 0) + 256).toString()
            const type = head.match(TYPE_RE)?.[1] ?? ''
            if (type !== 'full' && type !== 'delta') {
              ws.terminate()
              return reject(new Error(`first frame is ${head.slice(0, 120)}`))
            }
            this.onFirst?.(data)
            this.onFirst = null
            this.version = Number(head.match(VERSION_RE)?.[1] ?? this.version)
            this.firstFrame = {type, bytes: data.length, gzip: gz}
            this.hasMap = true
            this.reportsSent = 0
            this.newPeers = []
            // meshd reports on (re)connect, then on its own 10 s timer (any phase).
            this.report()
            this.nextReportAt = performance.now() + Math.random() * REPORT_INTERVAL_MS
            return resolve({attempts: attempt + 1, type})
          }
          this.onFrame(data)
        })
      }
      tryOnce()
    })
  }

  /** meshd's reconnect: after a backoff, resuming from its version; bounded attempts. */
  reconnect() {
    setTimeout(
      () => {
        if (!this.swarm.reconnect || this.ws) return
        this.connect({version: this.version, deadline: performance.now() + 120_000}).catch(() => {
          const why = 'reconnect gave up'
          this.swarm.closes.set(why, (this.swarm.closes.get(why) ?? 0) + 1)
        })
      },
      250 + Math.random() * 250,
    )
  }

  onFrame(data) {
    const at = performance.now()
    if (this.watch) {
      if (!this.hit && data.includes(this.watch)) this.hit = {at, bytes: data.length}
      else this.otherFrames++
    }
    let msg
    try {
      msg = JSON.parse((data[0] === 0x1f && data[1] === 0x8b ? gunzipSync(data) : data).toString())
    } catch {
      return
    }
    if (typeof msg.version === 'number') this.version = msg.version
    // View 'all': a peer added is a WireGuard peer now, and the next report names it (offline).
    if (this.swarm.view === 'all')
      for (const p of msg.added ?? []) if (this.newPeers.length < 1000) this.newPeers.push(p.id)
  }

  /** The frames of this node's next report (see the module comment). */
  reportFrames() {
    const {ids, sent} = this.swarm
    const n = ids.length
    const perReport = REPORT_LIMITS.peersPerFrame * REPORT_LIMITS.framesPerReport
    const first = {type: 'report'}
    if (this.reportsSent === 0) {
      first.reset = true
      first.endpoints = [endpointOf(this.index)]
    }
    let entries = []
    const from = this.reportsSent * perReport
    if (this.swarm.view === 'active' && this.reportsSent === 0) {
      for (let d = 1; d <= Math.ceil(this.swarm.active / 2); d++)
        for (const p of new Set([(this.index + d) % n, (this.index - d + n) % n]))
          if (p !== this.index) entries.push(this.swarm.entry(this.index, p))
    } else if (this.swarm.view === 'all' && from < n - 1) {
      // Still sending the initial view: chunk k of the peers other than self.
      for (let k = from; k < Math.min(from + perReport, n - 1); k++) {
        const p = k >= this.index ? k + 1 : k
        entries.push(this.swarm.entry(this.index, p))
      }
    } else {
      const added = this.newPeers.splice(0)
      if (this.swarm.view === 'all')
        for (const id of added) entries.push({id, online: false, endpoint: null, path: 'none'})
      if (this.swarm.active > 0 && Math.random() < this.swarm.latencyChurn) {
        // One active peer's latency moved beyond jitter (shared/nat/latency.ts).
        const p = (this.index + 1) % n
        const e = this.swarm.entry(this.index, p)
        e.latencyMs = e.latencyMs + 50 + Math.round(Math.random() * 100)
        entries.push(e)
      }
    }
    entries = entries.slice(0, perReport)
    const frames = [first]
    for (let i = 0; i < entries.length; i += REPORT_LIMITS.peersPerFrame) {
      const chunk = entries.slice(i, i + REPORT_LIMITS.peersPerFrame)
      if (i === 0) first.peers = chunk
      else frames.push({type: 'report', peers: chunk})
    }
    sent.entries += entries.length
    return frames
  }

  /** Sends the next report now and schedules the one after. */
  report() {
    this.nextReportAt = performance.now() + REPORT_INTERVAL_MS
    if (!this.open) return
    for (const f of this.reportFrames()) {
      const text = JSON.stringify(f)
      this.swarm.sent.frames++
      this.swarm.sent.bytes += text.length
      this.ws.send(text)
    }
    this.reportsSent++
  }

  close() {
    this.ws?.removeAllListeners()
    this.ws?.on('error', () => undefined)
    this.ws?.terminate()
    this.ws = null
  }
}

/**
 * Sends the reports that are due, every `tickMs`, until stop() (meshd's timer per node, as one
 * timer for all of them).
 */
export function startReporting(nodes, tickMs = 100) {
  const timer = setInterval(() => {
    const now = performance.now()
    for (const node of nodes) if (node.hasMap && node.nextReportAt <= now) node.report()
  }, tickMs)
  return {stop: () => clearInterval(timer)}
}
