// The state store on a real file system: the atomic write's modes, no temp file (which may hold a
// private key) left behind when a write fails, and the coalesced netmap cache (FakeClock).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import type {NetmapFull} from '../shared/protocol/netmap.js'
import {FakeClock} from '../shared/testing/fake-clock.js'
import {StateStore, writeFileAtomic, type NetworkRecord} from './state-store.js'

describe('writeFileAtomic', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-store-'))
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('replaces the file with mode 0600 and leaves no temp file', () => {
    const file = path.join(dir, 'private.key')
    fs.writeFileSync(file, 'old\n')
    writeFileAtomic(file, 'new\n')
    expect(fs.readFileSync(file, 'utf8')).toBe('new\n')
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    expect(fs.readdirSync(dir)).toEqual(['private.key'])
  })

  it('removes its temp file, secret inside, when the final rename fails', () => {
    const sub = fs.mkdtempSync(path.join(dir, 'fail-'))
    // A non-empty directory where the file should go: rename(2) refuses to replace it.
    const target = path.join(sub, 'credential')
    fs.mkdirSync(target)
    fs.writeFileSync(path.join(target, 'x'), '')
    expect(() => writeFileAtomic(target, 'secret-credential\n')).toThrow()
    expect(fs.readdirSync(sub)).toEqual(['credential'])
  })
})

describe('StateStore netmap cache', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-netmap-'))
  afterAll(() => fs.rmSync(root, {recursive: true, force: true}))
  let seq = 0
  const RECORD = {
    name: 'lab',
    cidr: '10.1.0.0/24',
    controller: 'http://127.0.0.1:1',
    interface: 'tmesh0',
    nodeId: 'nd_1',
    nodeName: 'alpha',
    nodeStatus: 'active',
    address: '10.1.0.2',
    publicKey: 'x'.repeat(43) + '=',
    listenPort: 51820,
    up: true,
    joinedAt: '2026-01-01T00:00:00.000Z',
  } as const
  /** A store with one joined network on a FakeClock; `map(v)` stands in for a netmap of version v. */
  function setup(windowMs = 500) {
    const clock = new FakeClock()
    const errors: unknown[] = []
    const store = new StateStore(path.join(root, `s${++seq}`), {
      clock,
      netmapWriteMs: windowMs,
      onWriteError: (err) => errors.push(err),
    })
    store.init()
    const id = `net${seq}`
    store.createNetwork({...RECORD, id} as NetworkRecord, 'private', 'credential')
    const file = path.join(store.dir, 'networks', id, 'netmap.json')
    const map = (version: number) => ({type: 'full', version, peers: []}) as unknown as NetmapFull
    const version = (): number => (JSON.parse(fs.readFileSync(file, 'utf8')) as {version: number}).version
    return {clock, store, id, file, map, version, errors}
  }

  it('writes a burst of netmaps once per window: nothing before it, the latest at its end', async () => {
    const {clock, store, id, file, map, version, errors} = setup()
    for (let v = 1; v <= 5; v++) store.saveNetmap(id, map(v))
    clock.advance(499)
    expect(fs.existsSync(file)).toBe(false)
    clock.advance(1)
    await store.flush() // waits for the write the timer started
    expect(version()).toBe(5)
    const ino = fs.statSync(file).ino
    // More frames within the next window: again one write, at its end.
    store.saveNetmap(id, map(6))
    store.saveNetmap(id, map(7))
    clock.advance(500)
    await store.flush()
    expect(version()).toBe(7)
    expect(fs.statSync(file).ino).not.toBe(ino) // replaced by rename, never written in place
    expect(fs.readdirSync(path.dirname(file)).filter((f) => f.endsWith('.tmp'))).toEqual([])
    expect(errors).toEqual([])
    expect(clock.pending()).toBe(0)
  })

  it('does not write a netmap the file already holds', async () => {
    const {clock, store, id, file, map} = setup()
    store.saveNetmap(id, map(3))
    clock.advance(500)
    await store.flush()
    const ino = fs.statSync(file).ino
    store.saveNetmap(id, map(3))
    clock.advance(500)
    await store.flush()
    expect(fs.statSync(file).ino).toBe(ino)
  })

  it('flush() writes what is pending at once, so a clean stop loses nothing', async () => {
    const {clock, store, id, map, version} = setup(60_000)
    store.saveNetmap(id, map(1))
    store.saveNetmap(id, map(2))
    await store.flush()
    expect(version()).toBe(2)
    expect(clock.pending()).toBe(0)
  })

  it('a network deleted with a write pending or in flight leaves nothing behind', async () => {
    const pending = setup()
    pending.store.saveNetmap(pending.id, pending.map(1))
    pending.store.deleteNetwork(pending.id)
    pending.clock.advance(500)
    await pending.store.flush()
    expect(fs.readdirSync(path.join(pending.store.dir, 'networks'))).toEqual([])
    expect(pending.clock.pending()).toBe(0)

    const inFlight = setup()
    inFlight.store.saveNetmap(inFlight.id, inFlight.map(1))
    inFlight.clock.advance(500) // the async write starts
    inFlight.store.deleteNetwork(inFlight.id)
    await inFlight.store.flush()
    expect(fs.readdirSync(path.join(inFlight.store.dir, 'networks'))).toEqual([])
    expect(inFlight.errors).toEqual([]) // a write of a deleted network failing is not an error
  })
})
