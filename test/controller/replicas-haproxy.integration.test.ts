// Two controller replicas (real `mesh controller start` processes) on one real PostgreSQL,
// behind a real haproxy: a change made through one replica reaches a node connected through
// the other within a second, presence agrees on both, and when one replica is SIGKILLed while
// nodes are connected and an admin keeps writing, its nodes are back (through the load
// balancer, on the survivor) within 10 s and no acknowledged write is lost.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {client, publicKey, type Client, type Reply} from '../../controller/testing/client.js'
import {connectWs, type WsClient} from '../../controller/testing/ws-client.js'
import {haproxySkipReason, startHaproxy, type HaproxyServer} from '../support/haproxy.js'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../support/postgres.js'
import {CLI_BUILT, startCliController, type ChildController} from './helpers.js'

const skip = postgresSkipReason() ?? haproxySkipReason() ?? (CLI_BUILT ? undefined : 'run the build first')
const ADMIN_PASSWORD = 'replicas behind haproxy test password'
type Frame = {type: string; version?: number; added?: {id: string}[]; peers?: {id: string}[]}

describe.skipIf(skip !== undefined)(
  `controller replicas behind haproxy${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let pg: PostgresServer
    let lb: HaproxyServer
    let dir: string
    const replicas: ChildController[] = []
    const sockets: WsClient[] = []
    let api: Client
    let token: string

    beforeAll(async () => {
      pg = await startPostgres()
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-lb-'))
      const database = await pg.createDatabase()
      for (const name of ['r1', 'r2']) {
        replicas.push(
          await startCliController({
            dataDir: path.join(dir, name),
            database,
            adminPassword: ADMIN_PASSWORD,
            args: ['--stun-listen', 'off', '--discovery-listen', 'off', '--trusted-proxy', '127.0.0.1'],
          }),
        )
      }
      const backends = replicas.map((r, i) => {
        const u = new URL(r.url)
        return {name: `r${i + 1}`, host: u.hostname, port: Number(u.port)}
      })
      lb = await startHaproxy({backends})
      api = client(lb.url)
      const login = await api.req('POST', '/api/v1/login', {
        body: {username: 'admin', password: ADMIN_PASSWORD},
      })
      expect(login.status, login.text).toBe(200)
      token = login.body.token
    })
    afterAll(async () => {
      await Promise.all(sockets.map((s) => s.close()))
      await lb?.stop()
      for (const r of replicas) await r.kill()
      await pg?.stop()
      if (dir) fs.rmSync(dir, {recursive: true, force: true})
    })

    /** Runs `fn` with new connections going to replica `name` only (the other drained). */
    async function via<T>(name: 'r1' | 'r2', fn: () => Promise<T>): Promise<T> {
      const other = name === 'r1' ? 'r2' : 'r1'
      await lb.setBackendState(other, 'drain')
      try {
        return await fn()
      } finally {
        await lb.setBackendState(other, 'ready')
      }
    }
    const fresh = () => client(lb.url) // a new keep-alive pool: its connection goes where haproxy says

    async function network(name: string, octet: number) {
      const r = await api.req('POST', '/api/v1/networks', {
        token,
        body: {name, cidr: `10.${octet}.0.0/24`, joinPolicy: 'open'},
      })
      expect(r.status, r.text).toBe(201)
      return r.body as {id: string}
    }
    async function register(c: Client, networkId: string, name: string) {
      return c.req('POST', '/api/v1/register', {
        token,
        body: {network: networkId, publicKey: publicKey(), name},
      })
    }
    async function session(credential: string): Promise<WsClient> {
      const s = await connectWs(`${lb.url}/api/v1/netmap`, credential)
      sockets.push(s)
      await s.next<Frame>((f) => f.type === 'full', 5_000)
      return s
    }

    it('tells a node connected through replica 1 of a node registered through replica 2 within a second', async () => {
      const net = await network('lb-fanout', 81)
      const a = await register(api, net.id, 'a')
      expect(a.status, a.text).toBe(201)
      const wsA = await via('r1', () => session(a.body.credential))
      const started = performance.now()
      const b = await via('r2', () => register(fresh(), net.id, 'b'))
      expect(b.status, b.text).toBe(201)
      await wsA.next<Frame>(
        (f) => f.type === 'delta' && (f.added ?? []).some((p) => p.id === b.body.node.id),
        1_000,
      )
      expect(performance.now() - started).toBeLessThan(1_000)
    })

    it('agrees on presence across replicas', async () => {
      const net = await network('lb-presence', 82)
      const n = await register(api, net.id, 'n')
      // An admin event stream on replica 1 hears the node come online on replica 2 (by NOTIFY).
      const events = await via('r1', async () => {
        const e = await connectWs(`${lb.url}/api/v1/events`, token)
        sockets.push(e)
        await e.next<Frame>((f) => f.type === 'snapshot', 5_000)
        return e
      })
      await via('r2', () => session(n.body.credential))
      await events.next<{type: string; node: {id: string}}>(
        (f) => f.type === 'node_online' && f.node.id === n.body.node.id,
        2_000,
      )
      const list = await via('r1', () => fresh().req('GET', `/api/v1/networks/${net.id}/nodes`, {token}))
      const me = (list.body.items as {id: string; online: boolean}[]).find((x) => x.id === n.body.node.id)
      expect(me?.online).toBe(true)
    })

    it('survives a replica SIGKILLed under connected nodes and a writing admin: nodes back within 10 s, no acknowledged write lost', async () => {
      const net = await network('lb-failover', 83)
      // Six nodes, three on each replica.
      const nodes: {credential: string; ws?: WsClient}[] = []
      for (let i = 0; i < 6; i++) {
        const r = await register(api, net.id, `f${i}`)
        expect(r.status, r.text).toBe(201)
        nodes.push({credential: r.body.credential})
      }
      for (const [i, n] of nodes.entries())
        n.ws = await via(i % 2 === 0 ? 'r1' : 'r2', () => session(n.credential))

      // The admin writes all along: every acknowledged (201) registration must survive.
      const acknowledged: string[] = []
      let refused = 0
      let writing = true
      let fiveAcknowledged!: () => void
      const writingUnderway = new Promise<void>((r) => (fiveAcknowledged = r))
      const writer = (async () => {
        for (let i = 0; writing && i < 2_000; i++) {
          const r = await register(api, net.id, `w${i}`).catch(() => undefined)
          if (r?.status === 201) acknowledged.push(r.body.node.id)
          else refused++
          if (acknowledged.length === 5) fiveAcknowledged()
        }
      })()
      await writingUnderway

      const victim = replicas[0] as ChildController
      const killedAt = performance.now()
      await victim.kill()
      // Nodes whose socket closed reconnect through the load balancer, as meshd does (it backs
      // off from 100 ms; here at once, bounded).
      // Even-numbered nodes were on replica 1: their sockets close; the others stay open.
      const back = await Promise.all(
        nodes.map(async (n, i) => {
          if (i % 2 !== 0) return 0
          await n.ws!.closed
          for (let attempt = 0; attempt < 5; attempt++) {
            try {
              n.ws = await session(n.credential)
              return performance.now() - killedAt
            } catch {
              // haproxy still counted the dead replica: retry once it has marked it down.
              await lb.waitForServer('r1', 'DOWN', 5_000)
            }
          }
          throw new Error('did not reconnect')
        }),
      )
      for (const [i, n] of nodes.entries())
        if (i % 2 !== 0) expect(n.ws!.ws.readyState, `node ${i} on the survivor`).toBe(n.ws!.ws.OPEN)
      writing = false
      await writer
      const reconnected = back.filter((ms) => ms > 0)
      expect(reconnected.length).toBeGreaterThanOrEqual(3)
      expect(Math.max(...reconnected)).toBeLessThan(10_000)
      // Every acknowledged write is there (read through the survivor).
      const listed = new Set<string>()
      let cursor: string | null = null
      for (let page = 0; page < 100; page++) {
        const r: Reply<{items: {id: string}[]; nextCursor: string | null}> = await api.req(
          'GET',
          `/api/v1/networks/${net.id}/nodes?limit=500${cursor ? `&cursor=${cursor}` : ''}`,
          {token},
        )
        expect(r.status, r.text).toBe(200)
        for (const n of r.body.items as {id: string}[]) listed.add(n.id)
        cursor = r.body.nextCursor
        if (!cursor) break
      }
      expect(acknowledged.filter((id) => !listed.has(id))).toEqual([])
      expect(acknowledged.length).toBeGreaterThan(5)
      console.info(
        `failover: ${reconnected.length} nodes back in max ${Math.round(Math.max(...reconnected))} ms; ${acknowledged.length} writes acknowledged, ${refused} refused during the kill`,
      )
    })
  },
)
