// User names are global (login carries no tenant), so USERNAME_TAKEN is rationed per tenant:
// a tenant owner cannot list another tenant's users by trying names. Real SQLite, injected clock.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import type {Principal} from './auth/auth.js'
import {ControllerState, USERNAME_TAKEN_PER_HOUR} from './state.js'
import {SqliteStore} from './store/sqlite/sqlite-store.js'
import {FakeClock} from '../shared/testing/fake-clock.js'

const META = {sourceAddress: '127.0.0.1', requestId: null}
const PASSWORD = 'a long enough password'

let dir: string
let store: SqliteStore
let state: ControllerState
let clock: FakeClock
let superuser: Principal

async function tenantOwner(name: string): Promise<Principal> {
  await state.createTenant(superuser, {name, owner: {username: `${name}-owner`, password: PASSWORD}}, META)
  const {token} = await state.auth.login(`${name}-owner`, PASSWORD, META)
  return (await state.auth.authenticateUser(token))!
}

/** The error code of a user create, or 'OK'. */
const create = (p: Principal, username: string) =>
  state.createUser(p, {username, password: PASSWORD, role: 'member'}, META).then(
    () => 'OK',
    (err: {code?: string}) => err.code ?? String(err),
  )

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-names-'))
  store = await SqliteStore.open(path.join(dir, 'mesh.db'))
  clock = new FakeClock(Date.parse('2030-01-01T00:00:00Z'))
  state = new ControllerState(store, {clock})
  await state.auth.bootstrap(PASSWORD)
  const {token} = await state.auth.login('admin', PASSWORD, META)
  superuser = (await state.auth.authenticateUser(token))!
})
afterEach(async () => {
  await state.close()
  await store.close()
  fs.rmSync(dir, {recursive: true, force: true})
})

describe('user name probes', () => {
  it('answers USERNAME_TAKEN 10 times an hour per tenant, then refuses every create, free names too', async () => {
    const victim = await tenantOwner('victim')
    for (let i = 0; i < 12; i++) expect(await create(victim, `staff-${i}`)).toBe('OK')
    const prober = await tenantOwner('prober')
    const answers: string[] = []
    for (let i = 0; i < 12; i++) answers.push(await create(prober, `staff-${i}`))
    expect(answers.slice(0, USERNAME_TAKEN_PER_HOUR)).toEqual(Array(10).fill('USERNAME_TAKEN'))
    expect(answers.slice(USERNAME_TAKEN_PER_HOUR)).toEqual(['RATE_LIMITED', 'RATE_LIMITED'])
    // A free name gets the same answer as a taken one: no oracle left.
    expect(await create(prober, 'surely-free')).toBe('RATE_LIMITED')
    // Another tenant has its own allowance.
    expect(await create(victim, 'staff-0')).toBe('USERNAME_TAKEN')
    clock.advance(3_600_000)
    expect(await create(prober, 'surely-free')).toBe('OK')
    expect(await create(prober, 'staff-11')).toBe('USERNAME_TAKEN')
  })

  it('lets concurrent probes get no more USERNAME_TAKEN answers than the allowance', async () => {
    const victim = await tenantOwner('victim')
    await create(victim, 'taken')
    const prober = await tenantOwner('prober')
    const answers = await Promise.all(Array.from({length: 30}, () => create(prober, 'taken')))
    expect(answers.filter((a) => a === 'USERNAME_TAKEN')).toHaveLength(USERNAME_TAKEN_PER_HOUR)
    expect(answers.filter((a) => a === 'RATE_LIMITED')).toHaveLength(30 - USERNAME_TAKEN_PER_HOUR)
  })

  it('does not spend the allowance on creates that succeed', async () => {
    const owner = await tenantOwner('busy')
    for (let i = 0; i < USERNAME_TAKEN_PER_HOUR + 2; i++) expect(await create(owner, `new-${i}`)).toBe('OK')
    expect(await create(owner, 'new-0')).toBe('USERNAME_TAKEN')
  })
})
