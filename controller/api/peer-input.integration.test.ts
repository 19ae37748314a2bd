// What one registering node can put into every other node's netmap, over real HTTP on a free port
// with a real SQLite file: public keys that cannot make a shared secret and endpoints that are not
// IP literals are refused at the door, whichever way the node registers.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {client, createNetwork, publicKey, type Client} from '../testing/client.js'
import {connectWs, type WsClient} from '../testing/ws-client.js'
import {toPeer} from './netmap.js'
import type {StoredNode} from '../store/store.js'

let ctl: TestController
let api: Client
let admin: string
const sockets: WsClient[] = []

beforeAll(async () => {
  ctl = await startTestController()
  api = client(ctl.url)
  admin = ctl.adminToken
})
afterAll(async () => {
  await Promise.all(sockets.map((ws) => ws.close()))
  await ctl?.close()
})

let n = 0
const name = (p: string) => `${p}-${++n}`
let octet = 0
const cidr24 = () => `10.${++octet}.0.0/24`

const network = (body: Record<string, unknown> = {}) =>
  createNetwork(ctl, {name: name('net'), cidr: cidr24(), ...body})
const register = (body: Record<string, unknown>, token?: string) =>
  api.req('POST', '/api/v1/register', {token, body: {publicKey: publicKey(), name: name('node'), ...body}})

/** One way in of each kind: a single-use invite, a single-use auth key, a user token (open network). */
async function waysIn(): Promise<
  {how: string; body: Record<string, unknown>; token?: string; netId: string}[]
> {
  const net = await network({joinPolicy: 'open'})
  const inv = await api.req('POST', `/api/v1/networks/${net.id}/invites`, {token: admin, body: {maxUses: 1}})
  expect(inv.status, inv.text).toBe(201)
  const key = await api.req('POST', `/api/v1/networks/${net.id}/authkeys`, {token: admin, body: {}})
  expect(key.status, key.text).toBe(201)
  return [
    {how: 'invite', body: {invite: inv.body.code}, netId: net.id},
    {how: 'auth key', body: {authKey: key.body.key}, netId: net.id},
    {how: 'user token', body: {network: net.id}, token: admin, netId: net.id},
  ]
}

async function nodeCount(netId: string): Promise<number> {
  const r = await api.req('GET', `/api/v1/networks/${netId}/nodes`, {token: admin})
  expect(r.status, r.text).toBe(200)
  return (r.body.items as unknown[]).length
}

const LOW_ORDER_KEYS = [
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', // 0
  'AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', // 1
  '7P///////////////////////////////////////38=', // p - 1
  '4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=', // order 8
  'X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEVc=', // order 8
  '7f///////////////////////////////////////38=', // p (0, not canonical)
  '7v///////////////////////////////////////38=', // p + 1 (1, not canonical)
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA=', // 0 with bit 255 set
]

describe('registration refuses public keys that cannot make a shared secret', () => {
  it('answers every low-order X25519 key with 400 VALIDATION_FAILED naming publicKey, by invite, auth key and token', async () => {
    for (const way of await waysIn()) {
      for (const key of LOW_ORDER_KEYS) {
        const r = await register({...way.body, publicKey: key}, way.token)
        expect([r.status, r.body.error?.code], `${way.how} ${key}`).toEqual([400, 'VALIDATION_FAILED'])
        expect(r.body.error.message, `${way.how} ${key}`).toMatch(/^publicKey: a low-order X25519 key/)
      }
      // Nothing was registered, and the single-use invite / auth key is still unused.
      expect(await nodeCount(way.netId)).toBe(0)
      const ok = await register(way.body, way.token)
      expect(ok.status, `${way.how}: ${ok.text}`).toBe(201)
      await api.req('DELETE', `/api/v1/nodes/${ok.body.node.id}`, {token: admin})
    }
  })
})

/** Endpoints a node might send that no peer can use; each must be refused on its own. */
const BAD_ENDPOINTS = [
  '999.999.999.999:1',
  '[:::::]:1',
  '1.2.3.4:65536',
  '1.2.3.4:0',
  '01.2.3.4:5',
  '[fe80::1%eth0]:5',
  'wg.example.com:51820',
  '127.0.0.1:51820',
  '0.0.0.0:51820',
  '[::]:51820',
  '224.0.0.1:51820',
  '255.255.255.255:51820',
  '169.254.3.4:51820',
  '[fe80::1]:51820',
]

describe('registration refuses endpoints that are not IP literals a peer can reach', () => {
  it('answers each bad endpoint with 400 VALIDATION_FAILED naming it, by invite, auth key and token, registering nothing', async () => {
    for (const way of await waysIn()) {
      for (const bad of BAD_ENDPOINTS) {
        const r = await register({...way.body, endpoints: ['203.0.113.7:51820', bad]}, way.token)
        expect([r.status, r.body.error?.code], `${way.how} ${bad}`).toEqual([400, 'VALIDATION_FAILED'])
        expect(r.body.error.message, `${way.how} ${bad}`).toMatch(/^endpoints\.1: an endpoint such as/)
      }
      expect(await nodeCount(way.netId)).toBe(0)
      const ok = await register(
        {...way.body, endpoints: ['203.0.113.7:51820', '[2001:DB8::1]:51820']},
        way.token,
      )
      expect(ok.status, `${way.how}: ${ok.text}`).toBe(201)
      // Stored in canonical form.
      expect(ok.body.node.endpoints).toEqual(['203.0.113.7:51820', '[2001:db8::1]:51820'])
      await api.req('DELETE', `/api/v1/nodes/${ok.body.node.id}`, {token: admin})
    }
  })
})

type Frame = {
  type: string
  peers?: {id: string; endpoints: string[]}[]
  changed?: {id: string; endpoints: string[]}[]
}

describe('node reports: bad endpoints are dropped one by one, never stored or sent to peers', () => {
  it('keeps the good candidates of a report, drops the bad ones, and keeps the socket open', async () => {
    const net = await network({joinPolicy: 'open'})
    const a = await register({network: net.id}, admin)
    const b = await register({network: net.id}, admin)
    expect([a.status, b.status]).toEqual([201, 201])
    const wsA = await connectWs(`${ctl.url}/api/v1/netmap`, a.body.credential)
    const wsB = await connectWs(`${ctl.url}/api/v1/netmap`, b.body.credential)
    sockets.push(wsA, wsB)
    await wsA.next<Frame>((f) => f.type === 'full')
    await wsB.next<Frame>((f) => f.type === 'full')
    wsB.ws.send(
      JSON.stringify({
        type: 'report',
        endpoints: [
          ...BAD_ENDPOINTS.slice(0, 8),
          '198.51.100.20:51820',
          ...BAD_ENDPOINTS.slice(8, 14),
          '[2001:DB8::7]:9',
        ],
      }),
    )
    const d = await wsA.next<Frame>((f) => f.type === 'delta' && f.changed?.[0]?.id === b.body.node.id)
    expect(d.changed?.[0]?.endpoints).toEqual(['198.51.100.20:51820', '[2001:db8::7]:9'])
    const shown = await api.req('GET', `/api/v1/nodes/${b.body.node.id}`, {token: admin})
    expect(shown.body.endpoints).toEqual(['198.51.100.20:51820', '[2001:db8::7]:9'])
    // A newcomer's full map carries the same, and the reporter's socket is still open.
    const c = await register({network: net.id}, admin)
    const wsC = await connectWs(`${ctl.url}/api/v1/netmap`, c.body.credential)
    sockets.push(wsC)
    const full = await wsC.next<Frame>((f) => f.type === 'full')
    expect(full.peers?.find((p) => p.id === b.body.node.id)?.endpoints).toEqual([
      '198.51.100.20:51820',
      '[2001:db8::7]:9',
    ])
    expect(wsB.ws.readyState).toBe(wsB.ws.OPEN)
  })

  it('never sends a peer an endpoint stored before endpoints were checked', () => {
    const stored = {
      id: 'nd_x',
      name: 'x',
      publicKey: publicKey(),
      address: '10.9.0.2',
      endpoints: ['999.999.999.999:1', '203.0.113.9:51820', '[:::::]:1'],
      hostname: '',
      os: '',
      tags: [],
    } as unknown as StoredNode
    expect(toPeer(stored).endpoints).toEqual(['203.0.113.9:51820'])
  })
})
