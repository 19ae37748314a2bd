// Failed-login limits of auth (auth.ts) with a real SQLite file and an injected clock: an
// attacker who knows a user name cannot lock that user out of the sources it already uses, and
// a new source is only throttled, while guessing one account from many addresses stays capped.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import type {RequestMeta} from '../context.js'
import {storeWrites} from '../domain/writes.js'
import {Auth} from './auth.js'
import {SqliteStore} from '../store/sqlite/sqlite-store.js'
import {FakeClock} from '../../shared/testing/fake-clock.js'

const PASSWORD = 'a long enough password'
const from = (sourceAddress: string): RequestMeta => ({sourceAddress, requestId: null})
const ATTACKER = from('203.0.113.7')
const HOME = from('198.51.100.2')
const NEW_PLACE = from('198.51.100.3')

let dir: string
let store: SqliteStore
let auth: Auth
let clock: FakeClock

/** The error code of a login, or 'OK'. */
const attempt = (password: string, meta: RequestMeta, username = 'admin') =>
  auth.login(username, password, meta).then(
    () => 'OK',
    (err: {code?: string}) => err.code ?? String(err),
  )

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-login-'))
  store = await SqliteStore.open(path.join(dir, 'mesh.db'))
  clock = new FakeClock(Date.parse('2030-01-01T00:00:00Z'))
  auth = new Auth(store, storeWrites(store), {clock})
  await auth.bootstrap(PASSWORD)
})
afterEach(async () => {
  await store.close()
  fs.rmSync(dir, {recursive: true, force: true})
})

describe('login limits', () => {
  it('lets a user in from an address it logged in from before while an attacker exhausts the limit elsewhere', async () => {
    expect(await attempt(PASSWORD, HOME)).toBe('OK')
    clock.advance(1_000)
    const guesses: string[] = []
    for (let i = 0; i < 11; i++) guesses.push(await attempt(`wrong-${i}`, ATTACKER))
    expect(guesses.slice(0, 10)).toEqual(Array(10).fill('INVALID_CREDENTIALS'))
    expect(guesses[10]).toBe('RATE_LIMITED')
    // Even a fresh attacker address gets nothing more for this user now.
    expect(await attempt('wrong', from('203.0.113.8'))).toBe('RATE_LIMITED')
    expect(await attempt(PASSWORD, HOME)).toBe('OK')
    // A wrong password from home does not spend the user's bucket either, and home still gets in.
    expect(await attempt('typo', HOME)).toBe('INVALID_CREDENTIALS')
    expect(await attempt(PASSWORD, HOME)).toBe('OK')
  })

  it('throttles a new address after the attack, and lets it in once the bucket refills', async () => {
    for (let i = 0; i < 10; i++) expect(await attempt(`wrong-${i}`, ATTACKER)).toBe('INVALID_CREDENTIALS')
    // The right password from a source never used before: throttled while the bucket is empty.
    await expect(auth.login('admin', PASSWORD, NEW_PLACE)).rejects.toMatchObject({
      code: 'RATE_LIMITED',
      hint: 'wait 6 s and try again',
    })
    clock.advance(6_000)
    expect(await attempt(PASSWORD, NEW_PLACE)).toBe('OK')
    // Now trusted: the attacker, still going, no longer keeps it out.
    clock.advance(60_000)
    for (let i = 0; i < 10; i++) await attempt(`again-${i}`, ATTACKER)
    expect(await attempt(PASSWORD, NEW_PLACE)).toBe('OK')
  })

  it('caps guessing one account from many addresses at the bucket, refilled one per 6 s', async () => {
    const codes: string[] = []
    for (let i = 0; i < 15; i++) codes.push(await attempt(`wrong-${i}`, from(`203.0.113.${10 + i}`)))
    expect(codes.filter((c) => c === 'INVALID_CREDENTIALS')).toHaveLength(10)
    expect(codes.filter((c) => c === 'RATE_LIMITED')).toHaveLength(5)
    clock.advance(6_000)
    expect(await attempt('wrong', from('203.0.113.99'))).toBe('INVALID_CREDENTIALS')
    expect(await attempt('wrong', from('203.0.113.98'))).toBe('RATE_LIMITED')
  })

  it('keeps the per-address limit strict for every user name, trusted or not', async () => {
    expect(await attempt(PASSWORD, HOME)).toBe('OK')
    for (let i = 0; i < 10; i++) await attempt(`wrong-${i}`, HOME, `nobody-${i}`)
    expect(await attempt(PASSWORD, HOME)).toBe('RATE_LIMITED')
    clock.advance(60_000)
    expect(await attempt(PASSWORD, HOME)).toBe('OK')
  })
})
