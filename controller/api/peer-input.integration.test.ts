// What one registering node can put into every other node's netmap, over real HTTP on a free port
// with a real SQLite file: public keys that cannot make a shared secret and endpoints that are not
// IP literals are refused at the door, whichever way the node registers.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {client, publicKey, type Client} from '../testing/client.js'

let ctl: TestController
let api: Client
let admin: string

beforeAll(async () => {
  ctl = await startTestController()
  api = client(ctl.url)
  admin = ctl.adminToken
})
afterAll(async () => {
  await ctl?.close()
})

let n = 0
const name = (p: string) => `${p}-${++n}`
let octet = 0
const cidr24 = () => `10.${++octet}.0.0/24`

async function network(body: Record<string, unknown> = {}) {
  const r = await api.req('POST', '/api/v1/networks', {
    token: admin,
    body: {name: name('net'), cidr: cidr24(), ...body},
  })
  expect(r.status, r.text).toBe(201)
  return r.body as {id: string; name: string}
}
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
