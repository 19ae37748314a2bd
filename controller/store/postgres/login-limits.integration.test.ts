// Failed-login limits shared by two replicas on a real PostgreSQL: guesses through both draw on
// one budget per address and per user; a right password gives its attempt back and trusts the
// source; windows and buckets refill on the (fake) clock.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {FakeClock} from '../../../shared/testing/fake-clock.js'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../../../test/support/postgres.js'
import type {LoginLimits} from '../../auth/login-limits.js'
import {PgLoginLimits} from './login-limits.js'
import {openPostgres} from './open.js'
import type pg from 'pg'

const skip = postgresSkipReason()
let server: PostgresServer | undefined
beforeAll(async () => {
  if (skip === undefined) server = await startPostgres()
})
afterAll(async () => {
  await server?.stop()
})

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (err: {code?: string}) => err.code ?? String(err),
  )

describe.skipIf(skip !== undefined)(`PgLoginLimits${skip ? ` (skipped: ${skip})` : ''}`, () => {
  async function twoReplicas(max = 4) {
    const url = await (server as PostgresServer).createDatabase()
    const pools: pg.Pool[] = [await openPostgres(url), await openPostgres(url)]
    const clock = new FakeClock()
    const a: LoginLimits = new PgLoginLimits(pools[0]!, {clock, max})
    const b: LoginLimits = new PgLoginLimits(pools[1]!, {clock, max})
    return {a, b, clock, close: () => Promise.all(pools.map((p) => p.end()))}
  }

  it('counts failures from one address through both replicas against one window', async () => {
    const {a, b, clock, close} = await twoReplicas(4)
    try {
      // Each user once, so only the address limit applies: 4 a minute in all, not 4 per replica.
      const results = []
      for (let i = 0; i < 6; i++)
        results.push(await codeOf((i % 2 ? a : b).charge(`user${i}`, '198.51.100.7')))
      expect(results).toEqual(['ok', 'ok', 'ok', 'ok', 'RATE_LIMITED', 'RATE_LIMITED'])
      expect(await codeOf(a.charge('user9', '198.51.100.8'))).toBe('ok') // another address
      clock.advance(60_000)
      expect(await codeOf(b.charge('user9', '198.51.100.7'))).toBe('ok')
    } finally {
      await close()
    }
  })

  it('caps guesses at one user from many addresses through both replicas, and refills', async () => {
    const {a, b, clock, close} = await twoReplicas(4)
    try {
      const results = []
      for (let i = 0; i < 6; i++)
        results.push(await codeOf((i % 2 ? a : b).charge('alice', `203.0.113.${i + 1}`)))
      expect(results).toEqual(['ok', 'ok', 'ok', 'ok', 'RATE_LIMITED', 'RATE_LIMITED'])
      clock.advance(15_000) // one refill (a minute / 4)
      expect(await codeOf(a.charge('alice', '203.0.113.50'))).toBe('ok')
      expect(await codeOf(b.charge('alice', '203.0.113.51'))).toBe('RATE_LIMITED')
    } finally {
      await close()
    }
  })

  it('gives a right password its attempt back and lets a trusted source past the user bucket on the other replica', async () => {
    const {a, b, close} = await twoReplicas(4)
    try {
      const charged = await a.charge('bob', '198.51.100.20')
      await a.succeeded('bob', '198.51.100.20', charged)
      // Someone else drains bob's bucket from other addresses...
      for (let i = 0; i < 4; i++) await b.charge('bob', `203.0.113.${100 + i}`)
      expect(await codeOf(b.charge('bob', '203.0.113.200'))).toBe('RATE_LIMITED')
      // ...but bob's own address, trusted after his login through replica a, still gets in through b.
      expect(await b.charge('bob', '198.51.100.20')).toEqual({trusted: true})
    } finally {
      await close()
    }
  })

  it('lets exactly the budget through when guesses race through both replicas at once', async () => {
    const {a, b, close} = await twoReplicas(4)
    try {
      const results = await Promise.all(
        Array.from({length: 12}, (_, i) => codeOf((i % 2 ? a : b).charge(`u${i}`, '198.51.100.99'))),
      )
      expect(results.filter((r) => r === 'ok')).toHaveLength(4)
      expect(results.filter((r) => r === 'RATE_LIMITED')).toHaveLength(8)
    } finally {
      await close()
    }
  })
})
