import {describe, expect, it} from 'vitest'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import type {InterfaceState, PeerState} from './driver.js'
import {InterfaceSampler} from './sampler.js'

const KEY = Buffer.alloc(32, 2).toString('base64')

const state = (rx: number, tx: number): InterfaceState => ({
  name: 'mesh0',
  publicKey: Buffer.alloc(32, 1).toString('base64'),
  privateKey: Buffer.alloc(32, 3).toString('base64'),
  listenPort: 51820,
  addresses: ['10.0.0.1/24'],
  mtu: 1420,
  up: true,
  peers: [
    {publicKey: KEY, allowedIps: ['10.0.0.2/32'], lastHandshakeMs: 0, rxBytes: rx, txBytes: tx} as PeerState,
  ],
})

function setup(opts: {maxAgeMs?: number} = {}) {
  const clock = new FakeClock()
  let counters = {rx: 0, tx: 0}
  let reads = 0
  const gates: (() => void)[] = []
  let gated = false
  const sampler = new InterfaceSampler({
    clock,
    ...opts,
    read: async () => {
      reads++
      if (gated) await new Promise<void>((r) => gates.push(r))
      return state(counters.rx, counters.tx)
    },
  })
  return {
    clock,
    sampler,
    reads: () => reads,
    set: (rx: number, tx: number) => (counters = {rx, tx}),
    gate: (on: boolean) => (gated = on),
    open: () => gates.splice(0).forEach((g) => g()),
  }
}

describe('InterfaceSampler', () => {
  it('reuses a sample younger than maxAgeMs instead of reading the interface again', async () => {
    const t = setup({maxAgeMs: 750})
    await t.sampler.get('mesh0')
    t.clock.advance(700)
    await t.sampler.get('mesh0')
    expect(t.reads()).toBe(1)
    t.clock.advance(100)
    await t.sampler.get('mesh0')
    expect(t.reads()).toBe(2)
  })

  it('shares one read among concurrent askers of a stale sample', async () => {
    const t = setup()
    t.gate(true)
    const asks = [t.sampler.get('mesh0'), t.sampler.get('mesh0'), t.sampler.get('mesh0')]
    await Promise.resolve()
    t.open()
    await Promise.all(asks)
    expect(t.reads()).toBe(1)
  })

  it('reads again when asked for a fresh sample, and keeps the later read when two overlap', async () => {
    const t = setup()
    t.gate(true)
    t.set(100, 0)
    const first = t.sampler.get('mesh0')
    t.set(200, 0)
    const fresh = t.sampler.get('mesh0', {fresh: true})
    await Promise.resolve()
    expect(t.reads()).toBe(2)
    t.open()
    await Promise.all([first, fresh])
    // The sample kept (reused: no third read) is the later read's.
    expect((await t.sampler.get('mesh0'))?.peers[0]?.rxBytes).toBe(200)
    expect(t.reads()).toBe(2)
  })

  it('turns byte counters into per-peer rates over at least a second, zero after a counter reset', async () => {
    const t = setup({maxAgeMs: 0})
    await t.sampler.get('mesh0')
    expect(t.sampler.rates('mesh0', KEY)).toEqual({rxBytesPerSecond: 0, txBytesPerSecond: 0})
    t.clock.advance(500)
    t.set(1000, 500)
    await t.sampler.get('mesh0') // under the window: no rate yet
    expect(t.sampler.rates('mesh0', KEY).rxBytesPerSecond).toBe(0)
    t.clock.advance(1500)
    t.set(4000, 2000)
    await t.sampler.get('mesh0')
    expect(t.sampler.rates('mesh0', KEY)).toEqual({rxBytesPerSecond: 2000, txBytesPerSecond: 1000})
    t.clock.advance(1000)
    t.set(10, 10)
    await t.sampler.get('mesh0')
    expect(t.sampler.rates('mesh0', KEY)).toEqual({rxBytesPerSecond: 0, txBytesPerSecond: 0})
  })

  it('tells listeners about every sample, and counts a failed read as no interface', async () => {
    const clock = new FakeClock()
    const seen: (InterfaceState | undefined)[] = []
    const sampler = new InterfaceSampler({clock, read: () => Promise.reject(new Error('wg: gone'))})
    sampler.on('sample', (_name, st) => seen.push(st))
    expect(await sampler.get('mesh0')).toBeUndefined()
    expect(seen).toEqual([undefined])
  })
})
