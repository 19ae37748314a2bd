// The controller refuses control, bidi and invisible characters in the free-text fields a
// terminal later shows (hostname, OS, network description): 400 VALIDATION_FAILED, nothing stored.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../controller/testing/test-controller.js'
import {generateKeyPair} from '../daemon/keys.js'

let ctl: TestController
let invite = ''

async function call(method: string, path: string, body: unknown, token?: string) {
  const res = await fetch(`${ctl.url}${path}`, {
    method,
    headers: {'content-type': 'application/json', ...(token && {authorization: `Bearer ${token}`})},
    body: JSON.stringify(body),
  })
  return {status: res.status, body: (await res.json()) as {code?: unknown; error?: unknown}}
}

const register = (fields: Record<string, string>) =>
  call('POST', '/api/v1/register', {invite, publicKey: generateKeyPair().publicKey, ...fields})

beforeAll(async () => {
  ctl = await startTestController()
  expect(
    (await call('POST', '/api/v1/networks', {name: 'text', cidr: '10.77.0.0/24'}, ctl.adminToken)).status,
  ).toBe(201)
  const inv = await call('POST', '/api/v1/networks/text/invites', {maxUses: 10}, ctl.adminToken)
  expect(inv.status).toBe(201)
  invite = String(inv.body.code)
})
afterAll(async () => {
  await ctl?.close()
})

describe('free-text fields at the API', () => {
  it.each([
    ['U+202E in hostname', {name: 'a1', hostname: 'gnp.\u202Eexe'}],
    ['U+2066 in hostname', {name: 'a2', hostname: 'host\u2066'}],
    ['U+200B in hostname', {name: 'a3', hostname: 'ad\u200Bmin'}],
    ['U+00AD in os', {name: 'a4', os: 'lin\u00ADux'}],
    ['ESC in os', {name: 'a5', os: 'linux\u001B]0;pwned\u0007'}],
  ])('refuses %s at registration with 400 VALIDATION_FAILED', async (_what, fields) => {
    const r = await register(fields)
    expect(r.status).toBe(400)
    expect(r.body.error).toMatchObject({code: 'VALIDATION_FAILED'})
  })

  it('registers the same node once the hostname is plain', async () => {
    const r = await register({name: 'plain', hostname: 'gnp.exe', os: 'linux'})
    expect(r.status, JSON.stringify(r.body)).toBe(201)
  })

  it('refuses a network description with bidi or zero-width characters, on create and on update', async () => {
    const created = await call(
      'POST',
      '/api/v1/networks',
      {name: 'desc', cidr: '10.78.0.0/24', description: 'office \u202Eevil'},
      ctl.adminToken,
    )
    expect(created.status).toBe(400)
    expect(created.body.error).toMatchObject({code: 'VALIDATION_FAILED'})
    const updated = await call('PATCH', '/api/v1/networks/text', {description: 'x\u200By'}, ctl.adminToken)
    expect(updated.status).toBe(400)
    expect(updated.body.error).toMatchObject({code: 'VALIDATION_FAILED'})
  })
})
