// `POST /v1/ping` through meshd's API on loopback: echo round trips to a peer named by name, id or
// address, each attempt with the path and endpoint `status` shows, timeouts, and the refusals.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {DaemonClient} from '../../cli/lib/daemon-client.js'
import {isMeshError} from '../../shared/errors.js'
import {PingResultSchema} from '../../shared/protocol/local-api.js'
import {startPingLab, type PingLab} from '../testing/ping-lab.js'

const errorCode = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'no error',
    (e: unknown) => (isMeshError(e) ? e.code : String(e)),
  )

describe('POST /v1/ping', () => {
  let lab: PingLab
  let c: DaemonClient
  beforeAll(async () => {
    lab = await startPingLab()
    c = new DaemonClient({socketPath: lab.socketPath})
  })
  afterAll(() => lab?.close())

  it('answers each attempt with its round trip and the path and endpoint that status shows for the peer', async () => {
    const res = await c.ping({peer: 'beta', count: 3, intervalMs: 50})
    expect(PingResultSchema.parse(res)).toEqual(res)
    const st = (await lab.d.backend.status()).networks[0]!.peers.find((p) => p.name === 'beta')!
    expect(res.map((a) => a.seq)).toEqual([1, 2, 3])
    for (const a of res) {
      expect(a).toMatchObject({peer: 'beta', address: '127.0.0.2', path: st.path, endpoint: st.endpoint})
      expect(a.rttMs).not.toBeNull()
      expect(a.rttMs!).toBeLessThan(1000)
    }
    expect(lab.responder.stats().answered).toBeGreaterThanOrEqual(3)
  })

  it('finds the peer by node id and by mesh address, in the network named', async () => {
    const byId = await c.ping({peer: 'id-beta', count: 1, network: 'lab'})
    const byAddress = await c.ping({peer: '127.0.0.2', count: 1, network: 'net1'})
    expect(byId[0]!.peer).toBe('beta')
    expect(byAddress[0]!.peer).toBe('beta')
    expect(byAddress[0]!.rttMs).not.toBeNull()
  })

  it('reports rttMs null for each attempt a silent peer leaves unanswered', async () => {
    const res = await c.ping({peer: 'gamma', count: 2, intervalMs: 50, timeoutMs: 100})
    expect(res.map((a) => [a.seq, a.peer, a.rttMs])).toEqual([
      [1, 'gamma', null],
      [2, 'gamma', null],
    ])
  })

  it('refuses an unknown peer, an unknown network, and counts or intervals out of bounds', async () => {
    expect(await errorCode(c.ping({peer: 'nobody'}))).toBe('PEER_NOT_FOUND')
    expect(await errorCode(c.ping({peer: 'beta', network: 'other'}))).toBe('NETWORK_NOT_JOINED')
    expect(await errorCode(c.ping({peer: 'beta', count: 0}))).toBe('VALIDATION_FAILED')
    expect(await errorCode(c.ping({peer: 'beta', count: 101}))).toBe('VALIDATION_FAILED')
    expect(await errorCode(c.ping({peer: 'beta', intervalMs: 10}))).toBe('VALIDATION_FAILED')
  })

  it('refuses with PING_UNAVAILABLE while the network is down', async () => {
    await lab.d.backend.down('lab')
    try {
      expect(await errorCode(c.ping({peer: 'beta'}))).toBe('PING_UNAVAILABLE')
    } finally {
      await lab.d.backend.up('lab')
    }
  })
})
