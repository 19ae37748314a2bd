// A node's NAT behaviour is stored with the node (migration 0009), so it reaches peers whatever
// controller holds their session: two replicas on one real PostgreSQL (a report through replica 1
// reaches a peer on replica 2 as a delta within a second), and a restarted controller (SQLite)
// still names it in full maps without the node reporting again.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../test/support/postgres.js'
import type {NatBehaviour} from '../shared/nat/behaviour.js'
import {client, createNetwork, joinNode} from './testing/client.js'
import {startReplicas, type TestReplicas} from './testing/replicas.js'
import {startTestController, type TestController} from './testing/test-controller.js'
import {connectWs, type WsClient} from './testing/ws-client.js'

type PeerFrame = {id: string; nat?: NatBehaviour}
type Frame = {type: string; version?: number; peers?: PeerFrame[]; changed?: PeerFrame[]}

const SYM = {mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent'} as const
const CONE = {mapping: 'endpoint-independent', filtering: 'address-dependent'} as const

const sockets: WsClient[] = []
afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()))
})

async function session(ctl: TestController, credential: string): Promise<{ws: WsClient; full: Frame}> {
  const ws = await connectWs(`${ctl.url}/api/v1/netmap`, credential)
  sockets.push(ws)
  const full = await ws.next<Frame>((f) => f.type === 'full', 5_000)
  return {ws, full}
}

const skip = postgresSkipReason()

describe.skipIf(skip !== undefined)(
  `NAT behaviour across two controller replicas on PostgreSQL${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let server: PostgresServer
    let replicas: TestReplicas | undefined
    let r1: TestController
    let r2: TestController

    beforeAll(async () => {
      server = await startPostgres()
      replicas = await startReplicas(server)
      ;({r1, r2} = replicas)
    })
    afterAll(async () => {
      await Promise.all(sockets.map((s) => s.close()))
      await replicas?.close()
      await server?.stop()
    })

    it('tells a peer on replica 2 of the NAT behaviour a node reports through replica 1 within a second', async () => {
      const net = await createNetwork(r1, {name: 'natrep', cidr: '10.75.0.0/24', joinPolicy: 'open'})
      const a = await joinNode(r1, net.id, 'a')
      const b = await joinNode(r2, net.id, 'b')
      const {ws: wsB, full} = await session(r2, b.credential)
      expect(full.peers?.find((p) => p.id === a.node.id)).not.toHaveProperty('nat')
      const {ws: wsA} = await session(r1, a.credential)
      const started = performance.now()
      wsA.ws.send(JSON.stringify({type: 'report', reset: true, nat: SYM}))
      const delta = await wsB.next<Frame>(
        (f) => f.type === 'delta' && (f.changed ?? []).some((p) => p.id === a.node.id && p.nat !== undefined),
        1_000,
      )
      expect(performance.now() - started).toBeLessThan(1_000)
      expect(delta.changed!.find((p) => p.id === a.node.id)!.nat).toEqual(SYM)
      // A new session on either replica has it in its full map; the REST node shows it too.
      for (const ctl of [r1, r2]) {
        const again = await session(ctl, b.credential)
        expect(again.full.peers?.find((p) => p.id === a.node.id)?.nat).toEqual(SYM)
        const shown = await client(ctl.url).req('GET', `/api/v1/nodes/${a.node.id}`, {token: ctl.adminToken})
        expect((shown.body as {nat?: unknown}).nat).toEqual(SYM)
      }
    })

    it('refuses a malformed NAT behaviour through either replica: the session closes and nothing is stored', async () => {
      const net = await createNetwork(r2, {name: 'natbad', cidr: '10.76.0.0/24', joinPolicy: 'open'})
      const a = await joinNode(r2, net.id, 'a')
      for (const ctl of [r1, r2]) {
        const {ws} = await session(ctl, a.credential)
        ws.ws.send(JSON.stringify({type: 'report', nat: {mapping: 'full-cone', filtering: 'unknown'}}))
        expect((await ws.closed).code).toBe(4400)
      }
      expect((await r1.running.store.getNode(a.node.id))?.nat).toBeUndefined()
    })
  },
)

describe('NAT behaviour across a controller restart (SQLite)', () => {
  let dir: string
  let ctl: TestController | undefined

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-nat-restart-'))
  })
  afterAll(async () => {
    await ctl?.close()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  it("is in a peer's full map after the restart without the node reporting again", async () => {
    ctl = await startTestController({dataDir: dir})
    const net = await createNetwork(ctl, {name: 'natrestart', cidr: '10.77.0.0/24', joinPolicy: 'open'})
    const a = await joinNode(ctl, net.id, 'a')
    const b = await joinNode(ctl, net.id, 'b')
    const {ws: wsB} = await session(ctl, b.credential)
    const {ws: wsA} = await session(ctl, a.credential)
    wsA.ws.send(JSON.stringify({type: 'report', reset: true, nat: CONE}))
    await wsB.next<Frame>(
      (f) => f.type === 'delta' && (f.changed ?? []).some((p) => p.id === a.node.id && p.nat !== undefined),
      1_000,
    )
    await wsA.close()
    await wsB.close()
    await ctl.close()
    ctl = await startTestController({dataDir: dir})
    // Only b comes back: a never reports again to this process.
    const {full} = await session(ctl, b.credential)
    expect(full.peers?.find((p) => p.id === a.node.id)?.nat).toEqual(CONE)
  })
})
