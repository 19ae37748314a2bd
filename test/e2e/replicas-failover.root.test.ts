/**
 * Controller replicas failing over under real tunnels: two `mesh controller start` replicas on
 * one real PostgreSQL, behind a real haproxy on the lab controller's URL (all in the lab's
 * controller namespace; the replicas reach PostgreSQL, which runs in the root namespace, over
 * its unix socket), and four meshd nodes with wireguard-go joined through haproxy: two public,
 * one behind a restricted NAT, one behind a symmetric NAT. Three pairs are direct (public with
 * public, public with restricted, public with symmetric) and one is relayed (restricted with
 * symmetric: the relay is served by the replicas, through haproxy).
 *
 * While every pair pings (5/s) and an admin keeps creating auth keys through haproxy, the
 * replica holding the most node sessions (from the shared presence table) is SIGKILLed. Before
 * that, a few nodes are placed (drain one replica in haproxy, shut the node's sessions there): the
 * relayed pair wholly on the victim, so its relay sessions cross the kill, and one node on the
 * survivor, so its nodes are seen left alone. Then:
 *  - every node's netmap session is back through haproxy within 10 s: the survivor holds a
 *    presence row for it (heard by LISTEN on the presence channel) and its meshd says connected
 *    again (heard on meshd's watch stream); the survivor's own nodes never lose theirs;
 *  - the direct pairs lose no ping (the controller is not on their path); the relayed pair, whose
 *    relay sessions were on the killed replica, stays on the relay, has both relay sockets back
 *    within RELAY_REOPEN_MAX_MS, and loses at most RELAYED_FAILOVER_LOST_MAX pings in the
 *    failover (the others arrive late) and nothing beyond its background rate outside it (see
 *    RELAYED_BACKGROUND_MAX);
 *  - every acknowledged auth key is there afterwards;
 *  - changes made after the failover reach every node: a node renamed, and a fifth node joining,
 *    which every other node then pings.
 */
import fs from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {DaemonClient} from '../../cli/lib/daemon-client.js'
import type {Lab} from '../../cli/lib/lab/lab.js'
import {publicAddress, type NatKind} from '../../cli/lib/lab/nat.js'
import {isAlive} from '../../cli/lib/lab/procs.js'
import {waitFor} from '../../cli/lib/lab/sh.js'
import type {LabNode} from '../../cli/lib/lab/state.js'
import {upLab} from '../../cli/lib/lab/up.js'
import {applyWatchEvent, type PathState, type Status} from '../../shared/protocol/local-api.js'
import {longestGap, pingStats} from '../lab/e2e-helpers.js'
import {labSkipReason} from '../lab/skip.js'
import {haproxySkipReason, startHaproxy, type HaproxyServer} from '../support/haproxy.js'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../support/postgres.js'

const skip = labSkipReason({tools: ['nft', 'sysctl']}) ?? postgresSkipReason() ?? haproxySkipReason()
const NET = 'failover'
const KINDS: NatKind[] = ['none', 'none', 'restricted', 'symmetric']
/** Each pair's ping series: 5 per second, this many (45 s), bounded by ping itself. */
const PING_COUNT = 225
const PING_INTERVAL_S = 0.2
/** The issue's bound: a killed replica's nodes are back within this. */
const RECONNECT_MAX_MS = 10_000
/**
 * The relayed pair (restricted with symmetric: NAT behaviour rules direct out). Both its relay
 * sessions (meshd's WebSockets to the replicas' relay, through haproxy) sit on the killed
 * replica. Each meshd sees its relay socket close abnormally (1006) 5-60 ms after the kill and,
 * the session having been healthy, reconnects at once (0-100 ms jitter; daemon/relay/client.ts)
 * through haproxy to the survivor; the pair stays on the relay meanwhile (probing candidates
 * that cannot work would only send its packets nowhere; daemon/nat/path.ts relayReturnMs), and
 * each shim queues what WireGuard sends in the outage, sends again what the dead socket carried
 * in its last 250 ms, and what went after the reopen once more when the peer is first heard
 * from (daemon/relay/shim.ts). Measured in 5 runs (2 cores shared with other work): the relay
 * sockets closed 16-47 ms and open again 87-121 ms after the kill, the pair never left the
 * relay, 0 pings lost; a ping in flight at the kill came back 132 ms late instead of being lost.
 * Before (the old backoff, probing, no queue): the pair probed its candidates and was back on
 * the relay 350-420 ms after the kill, 2 pings lost per run (issue 9 saw 5-14 and 3.8 s).
 * Bounds: the sockets back within RELAY_REOPEN_MAX_MS; the failover window runs from the kill
 * (a ping sent just before it may be in flight) until both are back, plus RELAY_SLACK_MS (the
 * shims' 1 s queue age: a ping in it arrives late, not lost); at most RELAYED_FAILOVER_LOST_MAX
 * lost in it (measured 0; one for a machine slower than the shims' 250 ms in-flight memory).
 * Outside it the relayed path may lose a ping now and then under this load (once measured 2-8
 * per 225 with meshd's background upgrade attempts and new peers; 0 in the 9 runs since, NAT
 * behaviour keeping this pair from attempting): RELAYED_BACKGROUND_MAX in all (1 s of pings),
 * RELAYED_GAP_MAX in a row.
 */
const RELAY_REOPEN_MAX_MS = 1000
const RELAY_SLACK_MS = 1000
const RELAYED_FAILOVER_LOST_MAX = 1
const RELAYED_BACKGROUND_MAX = 5
const RELAYED_GAP_MAX = 3

/**
 * When (unix ms) meshd's relay socket of network NET closed and opened again after `sinceMs`, from
 * its log ('relay socket closed' / 'relay socket open', daemon/backend.ts): the first of each.
 */
function relaySocketTimes(log: string, sinceMs: number): {closed?: number; open?: number} {
  const out: {closed?: number; open?: number} = {}
  for (const line of fs.readFileSync(log, 'utf8').split('\n')) {
    if (!line.includes('"relay socket ')) continue
    const e = JSON.parse(line) as {time: number; msg: string; network?: string}
    if (e.network !== NET || e.time < sinceMs) continue
    if (e.msg === 'relay socket closed') out.closed ??= e.time
    else if (e.msg === 'relay socket open' && out.closed !== undefined) out.open ??= e.time
  }
  return out
}

/** A connection string for the replicas: PostgreSQL's unix socket, reachable from any namespace. */
function unixSocketUrl(server: PostgresServer, tcpUrl: string): string {
  const u = new URL(tcpUrl)
  u.hostname = 'localhost'
  u.searchParams.set('host', path.dirname(server.dataDir))
  return u.toString()
}

/**
 * A node's status as meshd streams it (GET /v1/watch: the whole status, then changes), with a
 * wait on any condition of it, checked on every event: no polling.
 */
class StatusWatch {
  status: Status | undefined
  /** When (performance.now()) the node's session to the controller went down and came back. */
  readonly transitions: Array<{at: number; connected: boolean}> = []
  /** When (performance.now()) each peer's path changed, as meshd told it. */
  readonly paths: Array<{at: number; peerId: string; path: PathState}> = []
  readonly #waiters = new Set<() => void>()
  readonly #handle: {ended: Promise<void>; close(): void}

  constructor(readonly node: LabNode) {
    this.#handle = new DaemonClient({socketPath: node.socket, timeoutMs: 5000}).watch((ev) => {
      const was = this.network()?.connected
      this.status = applyWatchEvent(this.status, ev)
      const now = this.network()?.connected
      if (now !== undefined && now !== was) this.transitions.push({at: performance.now(), connected: now})
      for (const p of this.network()?.peers ?? [])
        if (this.paths.findLast((x) => x.peerId === p.id)?.path !== p.path)
          this.paths.push({at: performance.now(), peerId: p.id, path: p.path})
      for (const w of this.#waiters) w()
    })
    this.#handle.ended.catch(() => undefined)
  }

  network(): Status['networks'][number] | undefined {
    return this.status?.networks.find((n) => n.name === NET)
  }

  until<T>(what: string, probe: (st: Status) => T | undefined, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = (): void => {
        const v = this.status ? probe(this.status) : undefined
        if (v === undefined) return
        this.#waiters.delete(check)
        clearTimeout(timer)
        resolve(v)
      }
      const timer = setTimeout(() => {
        this.#waiters.delete(check)
        reject(new Error(`${this.node.name}: timed out after ${timeoutMs} ms waiting for ${what}`))
      }, timeoutMs)
      this.#waiters.add(check)
      check()
    })
  }

  close(): void {
    this.#handle.close()
  }
}

/**
 * The shared presence table (node → replicas holding a session of it), re-read whenever a
 * replica announces a change on `mesh_presence`, with waits on it.
 */
class PresenceWatch {
  rows: Array<{nodeId: string; replica: string}> = []
  readonly #waiters = new Set<() => void>()
  readonly #client: pg.Client
  #reading: Promise<void> = Promise.resolve()

  private constructor(url: string) {
    this.#client = new pg.Client({connectionString: url})
    this.#client.on('error', () => undefined)
    this.#client.on('notification', () => this.#reread())
  }

  static async open(url: string): Promise<PresenceWatch> {
    const w = new PresenceWatch(url)
    await w.#client.connect()
    await w.#client.query('LISTEN mesh_presence')
    await w.#reread()
    return w
  }

  #reread(): Promise<void> {
    this.#reading = this.#reading.then(async () => {
      const r = await this.#client
        .query<{node_id: string; replica: string}>(
          'SELECT node_id, replica FROM presence WHERE expires_at > $1',
          [new Date().toISOString()],
        )
        .catch(() => undefined)
      if (!r) return
      this.rows = r.rows.map((x) => ({nodeId: x.node_id, replica: x.replica}))
      for (const w of this.#waiters) w()
    })
    return this.#reading
  }

  replicasOf(nodeId: string): string[] {
    return this.rows.filter((r) => r.nodeId === nodeId).map((r) => r.replica)
  }

  until(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!ok()) return
        this.#waiters.delete(check)
        clearTimeout(timer)
        resolve()
      }
      const timer = setTimeout(() => {
        this.#waiters.delete(check)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${JSON.stringify(this.rows)}`))
      }, timeoutMs)
      this.#waiters.add(check)
      check()
    })
  }

  async close(): Promise<void> {
    await this.#client.end().catch(() => undefined)
  }
}

/**
 * The unanswered pings of a `ping -D` series: their icmp_seq and when each was sent, in ms after
 * `sinceMs` (unix ms), interpolated between the replies around it.
 */
function lostPings(output: string, count: number, sinceMs: number): Array<{seq: number; ms: number}> {
  const at = new Map<number, number>()
  for (const m of output.matchAll(/^\[(\d+\.\d+)\].*icmp_seq=(\d+) /gm))
    at.set(Number(m[2]), Number(m[1]) * 1000)
  const seqs = [...at.keys()].sort((x, y) => x - y)
  if (seqs.length === 0) return []
  const step = PING_INTERVAL_S * 1000
  const lost: Array<{seq: number; ms: number}> = []
  for (let seq = 1; seq <= count; seq++) {
    if (at.has(seq)) continue
    const prev = seqs.filter((x) => x < seq).at(-1)
    const next = seqs.find((x) => x > seq)
    let t: number
    if (prev !== undefined && next !== undefined)
      t = at.get(prev)! + ((seq - prev) * (at.get(next)! - at.get(prev)!)) / (next - prev)
    else if (prev !== undefined) t = at.get(prev)! + (seq - prev) * step
    else t = at.get(next!)! - (next! - seq) * step
    lost.push({seq, ms: Math.round(t - sinceMs)})
  }
  return lost
}

/** The longest run of consecutive icmp_seq numbers among `lost`. */
function longestRun(lost: ReadonlyArray<{seq: number}>): number {
  let longest = 0
  let run = 0
  for (const [i, l] of lost.entries()) {
    run = i > 0 && l.seq === lost[i - 1]!.seq + 1 ? run + 1 : 1
    longest = Math.max(longest, run)
  }
  return longest
}

/** The replica name a controller process uses in PostgreSQL, from its start-up log line. */
function replicaNameIn(log: string): string | undefined {
  for (const line of fs.readFileSync(log, 'utf8').split('\n')) {
    if (!line.includes('controller replica on PostgreSQL')) continue
    const parsed = JSON.parse(line) as {replica?: string}
    return parsed.replica
  }
  return undefined
}

describe.skipIf(skip !== undefined)(
  `controller replicas behind haproxy, failing over under real tunnels${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let pgServer: PostgresServer | undefined
    let lb: HaproxyServer | undefined
    let lab: Lab | undefined
    let tcpDatabase = ''
    let failed = false
    const watches: StatusWatch[] = []
    let presence: PresenceWatch | undefined
    /** Stops what a test left running (the admin's writer) when it failed half-way. */
    const stops: Array<() => void> = []

    beforeAll(async () => {
      const t0 = Date.now()
      pgServer = await startPostgres()
      tcpDatabase = await pgServer.createDatabase()
      const database = unixSocketUrl(pgServer, tcpDatabase)
      lab = (
        await upLab({
          nat: KINDS,
          network: NET,
          cidr: '10.247.0.0/24',
          teardownOnExit: true,
          onCreated: (l) => (lab = l),
          controller: {
            database,
            replicas: 2,
            loadBalancer: async ({ns, listen, backends}) => {
              lb = await startHaproxy({
                netns: ns,
                listen,
                backends: backends.map(({name, host, port}) => ({name, host, port})),
              })
            },
          },
        })
      ).lab
      console.log(
        `[e2e] lab ${lab.prefix}: 2 replicas behind haproxy, NATs ${KINDS.join(',')} up in ${Date.now() - t0} ms`,
      )
    })
    beforeEach(({onTestFailed}) => {
      onTestFailed(() => {
        failed = true
      })
    })
    afterAll(async () => {
      for (const stop of stops) stop()
      for (const w of watches) w.close()
      await presence?.close()
      await lb?.stop()
      if (lab) {
        const {logs} = lab.teardownSync({keepLogs: failed || process.env.MESH_E2E_KEEP_LOGS === '1'})
        if (logs) console.log(`[e2e] lab logs kept in ${logs}`)
      }
      await pgServer?.stop()
    })

    it('keeps every tunnel passing traffic while the replica with most sessions is SIGKILLed, its nodes back through haproxy within 10 s, no acknowledged write lost', async () => {
      const l = lab!
      const tTest = performance.now()
      const [n1, n2, n3, n4] = l.nodes as [LabNode, LabNode, LabNode, LabNode]
      const addr = (n: LabNode): string => n.addresses[NET]!
      await l.waitAllPairsPing(NET, [n1, n2, n3, n4], 60_000)

      for (const n of l.nodes) watches.push(new StatusWatch(n))
      const watchOf = (n: LabNode): StatusWatch => watches.find((w) => w.node === n)!
      // The pairs of the series, and the path each must be on before it starts.
      const pairs: Array<[LabNode, LabNode, PathState]> = [
        [n1, n2, 'direct'],
        [n1, n3, 'direct'],
        [n2, n4, 'direct'],
        [n3, n4, 'relay'],
      ]
      const pathOf = (a: LabNode, b: LabNode) => (st: Status) =>
        st.networks.find((n) => n.name === NET)?.peers.find((p) => p.id === b.nodeIds[NET])?.path
      /** Until every pair involving one of `nodes` is on its path, as both its ends say. */
      const pathsSettled = (nodes: LabNode[]): Promise<unknown> =>
        Promise.all(
          pairs
            .filter(([a, b]) => nodes.includes(a) || nodes.includes(b))
            .flatMap(([a, b, want]) => [
              watchOf(a).until(
                `${b.name} on a ${want} path`,
                (st) => (pathOf(a, b)(st) === want ? true : undefined),
                60_000,
              ),
              watchOf(b).until(
                `${a.name} on a ${want} path`,
                (st) => (pathOf(b, a)(st) === want ? true : undefined),
                60_000,
              ),
            ]),
        )
      await pathsSettled(l.nodes)

      // Which replica holds which node's session.
      presence = await PresenceWatch.open(tcpDatabase)
      const replicaProcs = ['controller/r1', 'controller/r2']
      const names = new Map(replicaProcs.map((p) => [p, replicaNameIn(l.log(p))]))
      for (const [p, n] of names) expect(n, `replica name of ${p} in its log`).toBeDefined()
      const ids = l.nodes.map((n) => n.nodeIds[NET]!)
      await presence.until(
        'a presence row for every node',
        () => ids.every((id) => presence!.replicasOf(id).length === 1),
        10_000,
      )
      const holding = (): string[][] =>
        replicaProcs.map((p) => ids.filter((id) => presence!.replicasOf(id).includes(names.get(p)!)))
      /** The replicas (haproxy's names) of a node's connections through haproxy now. */
      const lbServersOf = async (n: LabNode): Promise<string[]> =>
        [...(await lb!.command('show sess')).matchAll(/src=([\d.]+):\d+ fe=\S+ be=\S+ srv=(\S+)/g)]
          .filter((m) => m[1] === publicAddress(n))
          .map((m) => m[2]!)
          .sort()
      /**
       * Moves all of a node's connections (netmap and relay) to replica `ix`, meshd untouched:
       * the other replica is drained (no new connections) and haproxy shuts the node's sessions
       * there; meshd reconnects as after any lost connection, to `ix`. (Not by restarting meshd:
       * a restarted meshd takes a relayed peer's stale 127.0.0.1 endpoint for a direct path.)
       */
      const placeOn = async (n: LabNode, ix: number): Promise<void> => {
        const target = names.get(replicaProcs[ix]!)!
        const targetLb = `r${ix + 1}`
        const other = `r${2 - ix}`
        await lb!.setBackendState(other, 'drain')
        try {
          const sessions = [
            ...(await lb!.command('show sess')).matchAll(
              /^(0x[0-9a-f]+): .*?src=([\d.]+):\d+ fe=\S+ be=\S+ srv=(\S+)/gm,
            ),
          ].filter((m) => m[2] === publicAddress(n) && m[3] === other)
          for (const m of sessions) await lb!.command(`shutdown session ${m[1]}`)
          await presence!.until(
            `${n.name} on ${replicaProcs[ix]} alone`,
            () => presence!.replicasOf(n.nodeIds[NET]!).join() === target,
            15_000,
          )
          // The relay socket reconnects too; no event tells, so haproxy is asked (bounded).
          await waitFor(
            `${n.name}'s connections all on ${targetLb}`,
            async () => {
              const srvs = await lbServersOf(n)
              return srvs.length >= 2 && srvs.every((x) => x === targetLb)
            },
            {timeoutMs: 15_000, intervalMs: 100},
          )
        } finally {
          await lb!.setBackendState(other, 'ready')
        }
      }
      // The victim is the replica with most netmap sessions. haproxy's leastconn tends to put
      // every netmap session on one replica and every relay session on the other, so nodes are
      // placed first (placeOn): the relayed pair (node3, node4) wholly on the victim, so that its relay
      // sessions cross the kill, and node2 on the survivor if it holds nothing, so that a
      // replica's nodes are seen left alone. Both ends of the relayed pair go to one replica:
      // the replicas' built-in relays do not forward to each other (controller/relay/mesh.ts:
      // the built-in relay only dials stand-alone relays), so a pair split across replicas has
      // no relay path at all.
      const initially = holding()
      const victimIx = initially[0]!.length >= initially[1]!.length ? 0 : 1
      const victimLb = `r${victimIx + 1}`
      const placed: LabNode[] = []
      for (const n of [n3, n4])
        if (!(await lbServersOf(n)).every((srv) => srv === victimLb)) {
          await placeOn(n, victimIx)
          placed.push(n)
        }
      if (holding()[1 - victimIx]!.length === 0) {
        await placeOn(n2, 1 - victimIx)
        placed.push(n2)
      }
      if (placed.length > 0) {
        await l.waitAllPairsPing(NET, [n1, n2, n3, n4], 60_000)
        await pathsSettled(placed)
      }
      const held = holding()
      expect(held[victimIx]!.length).toBeGreaterThanOrEqual(held[1 - victimIx]!.length)
      for (const n of [n3, n4]) expect(await lbServersOf(n), n.name).toEqual([victimLb, victimLb])
      const victim = replicaProcs[victimIx]!
      const survivorName = names.get(replicaProcs[1 - victimIx]!)!
      const moved = l.nodes.filter((n) => held[victimIx]!.includes(n.nodeIds[NET]!))
      const stayed = l.nodes.filter((n) => !moved.includes(n))
      console.log(
        `[e2e] netmap sessions at first: r1 ${initially[0]!.length}, r2 ${initially[1]!.length}; ` +
          `placed ${placed.map((n) => n.name).join(', ') || 'none'}; now r1 ${held[0]!.length}, r2 ${held[1]!.length}; ` +
          `killing ${victim} (${moved.map((n) => n.name).join(', ')})`,
      )
      expect(stayed.length).toBeGreaterThan(0)

      // The ping series, one per pair, through the kill and what follows.
      const series = pairs.map(([a, b]) =>
        l.startHelper(a, `ping-${b.name}`, [
          'ping',
          '-n',
          // Unix time on every reply: when the lost ones went missing, against the kill.
          '-D',
          '-i',
          String(PING_INTERVAL_S),
          '-c',
          String(PING_COUNT),
          '-W',
          '1',
          addr(b),
        ]),
      )
      await waitFor(
        'every series to have 10 replies',
        () => series.every((s) => /icmp_seq=10 /.test(fs.readFileSync(s.log, 'utf8'))),
        {timeoutMs: 15_000, intervalMs: 100},
      )

      // The admin writes all along, through haproxy: every acknowledged auth key must survive.
      const admin = l.admin()
      const acknowledged: string[] = []
      let refused = 0
      let writing = true
      stops.push(() => (writing = false))
      let ackWaiter: {count: number; resolve: () => void} | undefined
      const writer = (async () => {
        for (let i = 0; writing && i < 5000; i++) {
          try {
            const r = await admin.createAuthKey({network: NET}, {})
            acknowledged.push(r.authKey.id)
          } catch {
            refused++
          }
          if (ackWaiter && acknowledged.length >= ackWaiter.count) {
            ackWaiter.resolve()
            ackWaiter = undefined
          }
        }
      })()
      /** Until `count` writes are acknowledged; fails if the writer gives up first. */
      const acksReach = (count: number): Promise<void> =>
        Promise.race([
          new Promise<void>((resolve) => {
            if (acknowledged.length >= count) resolve()
            else ackWaiter = {count, resolve}
          }),
          writer.then(() => {
            if (acknowledged.length < count)
              throw new Error(
                `the writer stopped at ${acknowledged.length} acknowledged writes (${refused} refused)`,
              )
          }),
        ])
      await acksReach(5)

      // Which replica each node's long-lived connections (netmap, relay) go to, as haproxy says.
      const lbSessions = await Promise.all(
        l.nodes.map(async (n) => `${n.name} ${(await lbServersOf(n)).join('+') || '-'}`),
      )
      console.log(`[e2e] haproxy sessions at the kill: ${lbSessions.join(', ')}`)

      // The kill.
      const killedAt = performance.now()
      const killedAtWall = Date.now()
      await l.killController('SIGKILL', victim)
      expect(isAlive(l.proc(victim)!)).toBe(false)
      const ackedAtKill = acknowledged.length

      // Back: a presence row on the survivor (controller side) for every node, and each moved
      // node's meshd saying connected again after it noticed the loss (node side).
      const backAt = new Map<string, number>()
      await presence.until(
        'every node to hold a session on the survivor',
        () => {
          for (const n of moved)
            if (!backAt.has(n.name) && presence!.replicasOf(n.nodeIds[NET]!).includes(survivorName))
              backAt.set(n.name, performance.now() - killedAt)
          return backAt.size === moved.length
        },
        RECONNECT_MAX_MS + 5000,
      )
      const nodeBack = await Promise.all(
        moved.map((n) =>
          watchOf(n).until(
            'meshd connected again after the kill',
            () => {
              const down = watchOf(n).transitions.find((t) => t.at > killedAt && !t.connected)
              const up = down && watchOf(n).transitions.find((t) => t.at > down.at && t.connected)
              return up ? up.at - killedAt : undefined
            },
            RECONNECT_MAX_MS + 5000,
          ),
        ),
      )
      console.log(
        `[e2e] back on the survivor (presence): ${[...backAt].map(([n, ms]) => `${n} ${Math.round(ms)} ms`).join(', ')}; ` +
          `meshd connected again: ${moved.map((n, i) => `${n.name} ${Math.round(nodeBack[i]!)} ms`).join(', ')}`,
      )
      for (const n of moved)
        expect(backAt.get(n.name)!, `${n.name} back`).toBeLessThanOrEqual(RECONNECT_MAX_MS)
      for (const ms of nodeBack) expect(ms).toBeLessThanOrEqual(RECONNECT_MAX_MS)
      for (const w of watches) expect(w.network()?.connected, `${w.node.name} connected`).toBe(true)
      // The survivor's own nodes never lost their session.
      for (const n of stayed) {
        expect(
          watchOf(n).transitions.filter((t) => t.at > killedAt),
          `${n.name} undisturbed`,
        ).toEqual([])
        expect(presence.replicasOf(n.nodeIds[NET]!)).toContain(survivorName)
      }
      // The kill and the reconnects fell inside the series.
      expect(series.every((s) => isAlive(s))).toBe(true)

      // Writes go on through the survivor; then every acknowledged one must be there.
      await acksReach(ackedAtKill + 5)
      writing = false
      await writer
      const keys = await admin.listAll('authkey.list', {params: {network: NET}}, {limit: 100_000})
      const present = new Set(keys.items.map((k) => k.id))
      const missing = acknowledged.filter((id) => !present.has(id))
      console.log(
        `[e2e] writes: ${acknowledged.length} acknowledged (${ackedAtKill} before the kill), ${refused} refused, ${acknowledged.length - missing.length} present`,
      )
      expect(missing).toEqual([])

      // Changes after the failover reach every node: a rename, and a new node.
      const renamed = 'node1-after-failover'
      const tRename = performance.now()
      await admin.updateNode({id: n1.nodeIds[NET]!}, {name: renamed})
      await Promise.all(
        [n2, n3, n4].map((n) =>
          watchOf(n).until(
            `${n1.name} renamed`,
            (st) =>
              st.networks.find((x) => x.name === NET)?.peers.find((p) => p.id === n1.nodeIds[NET])?.name ===
              renamed
                ? true
                : undefined,
            5000,
          ),
        ),
      )
      const renameMs = performance.now() - tRename
      const n5 = await l.addNode({nat: 'none'})
      const tJoin = performance.now()
      await l.join(n5, NET)
      const joinPingMs = await l.waitAllPairsPing(NET, [n1, n2, n3, n4, n5], 60_000)
      console.log(
        `[e2e] after the failover: rename seen by all in ${Math.round(renameMs)} ms; ${n5.name} joined and every pair pinged ${Math.round(performance.now() - tJoin)} ms after its join began (${joinPingMs} ms of pings)`,
      )

      // The series: all through the kill.
      await waitFor('every ping series to end', () => series.every((s) => !isAlive(s)), {
        timeoutMs: (PING_COUNT * PING_INTERVAL_S + 20) * 1000,
        intervalMs: 200,
      })
      const figures = pairs.map(([a, b, want], i) => {
        const out = fs.readFileSync(series[i]!.log, 'utf8')
        const {sent, received} = pingStats(out)
        return {
          pair: `${a.name}(${a.nat})->${b.name}(${b.nat})`,
          path: want,
          sent,
          received,
          gap: longestGap(out, sent),
          lost: lostPings(out, sent, killedAtWall),
          out,
        }
      })
      // The relayed pair's relay sockets: closed by the kill, open again (meshd's log).
      const sockets = [n3, n4].map((n) => relaySocketTimes(l.log(`${n.name}/meshd`), killedAtWall))
      const socketMs = (t: number | undefined) => (t === undefined ? undefined : t - killedAtWall)
      console.log(
        `[e2e] relay sockets after the kill: ${[n3, n4]
          .map(
            (n, i) =>
              `${n.name} closed +${socketMs(sockets[i]!.closed)} ms, open +${socketMs(sockets[i]!.open)} ms`,
          )
          .join('; ')}`,
      )
      // What each end of the relayed pair made of its path after the kill (meshd's watch).
      const pathChanges = [
        [n3, n4],
        [n4, n3],
      ].map(([a, b]) =>
        watchOf(a!)
          .paths.filter((x) => x.peerId === b!.nodeIds[NET] && x.at > killedAt)
          .map((x) => ({path: x.path, ms: Math.round(x.at - killedAt)})),
      )
      console.log(
        `[e2e] relayed pair's path changes after the kill: ${[n3, n4]
          .map(
            (n, i) => `${n.name} ${pathChanges[i]!.map((c) => `${c.path} +${c.ms} ms`).join(', ') || 'none'}`,
          )
          .join('; ')}`,
      )
      for (const s of sockets) {
        expect(s.closed, 'relay socket closed by the kill').toBeDefined()
        expect(s.open, 'relay socket open again').toBeDefined()
        expect(socketMs(s.open)!).toBeLessThanOrEqual(RELAY_REOPEN_MAX_MS)
      }
      // The failover window: from the kill (a ping sent just before it may be in flight) until
      // both relay sockets are back, plus the slack in which queued pings arrive late.
      const windowEnd = Math.max(...sockets.map((s) => socketMs(s.open)!)) + RELAY_SLACK_MS
      const inWindow = ({ms}: {ms: number}): boolean => ms >= -PING_INTERVAL_S * 1000 && ms <= windowEnd
      /** The replies to pings sent in the window that came late (over 100 ms), as "seq rtt". */
      const lateIn = (out: string): string[] =>
        [...out.matchAll(/^\[(\d+\.\d+)\].*icmp_seq=(\d+) .*time=([\d.]+) ms/gm)]
          .filter((m) => Number(m[3]) > 100)
          .filter((m) => inWindow({ms: Number(m[1]) * 1000 - Number(m[3]) - killedAtWall}))
          .map((m) => `${m[2]} ${Math.round(Number(m[3]))} ms`)
      for (const f of figures)
        console.log(
          `[e2e] ${f.pair} ${f.path}: ${f.received}/${f.sent} answered, lost ${f.sent - f.received}, longest gap ${f.gap}` +
            (f.lost.length > 0 ? ` (lost ≈ ${f.lost.map((x) => x.ms).join(', ')} ms after the kill)` : '') +
            (f.path === 'relay'
              ? `; ${f.lost.filter(inWindow).length} lost in the failover window (0-${Math.round(windowEnd)} ms), late there: ${lateIn(f.out).join(', ') || 'none'}`
              : ''),
        )
      // Both ends stayed on the relay through the failover: direct is ruled out for this pair.
      for (const c of pathChanges)
        expect(
          c.filter((x) => x.ms <= windowEnd),
          'relayed pair on the relay throughout the failover',
        ).toEqual([])
      console.log(`[e2e] test took ${Math.round(performance.now() - tTest)} ms`)
      for (const f of figures) {
        expect(f.sent, f.pair).toBe(PING_COUNT)
        if (f.path === 'direct') expect(f.sent - f.received, `${f.pair} lost`).toBe(0)
        else {
          expect(f.lost.filter(inWindow).length, `${f.pair} lost in the failover window`).toBeLessThanOrEqual(
            RELAYED_FAILOVER_LOST_MAX,
          )
          const outside = f.lost.filter((x) => !inWindow(x))
          expect(outside.length, `${f.pair} lost outside the failover window`).toBeLessThanOrEqual(
            RELAYED_BACKGROUND_MAX,
          )
          expect(longestRun(outside), `${f.pair} longest gap outside the window`).toBeLessThanOrEqual(
            RELAYED_GAP_MAX,
          )
        }
      }
    })
  },
)
