import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {createRelayKey, RelayKeyFile, RelayRegistry} from './registry.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, {recursive: true, force: true})
})

function setup() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-relay-reg-'))
  dirs.push(dataDir)
  const clock = new FakeClock()
  const lists: string[][] = []
  const registry = new RelayRegistry({
    keys: new RelayKeyFile(dataDir),
    clock,
    authenticateNode: async () => undefined,
    heartbeatMs: 1_000,
    onChange: (live) => lists.push(live.map((r) => `${r.region} ${r.url}`)),
  })
  return {dataDir, clock, registry, lists}
}

describe('RelayRegistry', () => {
  it('lists a relay from its first beat until it misses three, and tells every change', () => {
    const {dataDir, clock, registry, lists} = setup()
    const {key} = createRelayKey({dataDir, region: 'eu'})
    registry.heartbeat(key, {url: 'http://r1:8443/', connected: 0})
    expect(registry.live()).toEqual([{url: 'http://r1:8443', region: 'eu'}])
    clock.advance(2_500)
    registry.heartbeat(key, {url: 'http://r1:8443', connected: 3})
    clock.advance(2_500)
    expect(registry.live()).toHaveLength(1)
    clock.advance(1_000)
    expect(registry.live()).toEqual([])
    expect(lists).toEqual([['eu http://r1:8443'], []])
    registry.close()
  })

  it('hands each removal to every live relay once, with its next beat', () => {
    const {dataDir, registry} = setup()
    const {key} = createRelayKey({dataDir, region: 'eu'})
    registry.heartbeat(key, {url: 'http://r1', connected: 0})
    registry.heartbeat(key, {url: 'http://r2', connected: 0})
    registry.nodeGone({nodeId: 'nd_x', networkId: 'net_1'})
    expect(registry.heartbeat(key, {url: 'http://r1', connected: 0}).gone).toEqual([
      {nodeId: 'nd_x', networkId: 'net_1'},
    ])
    expect(registry.heartbeat(key, {url: 'http://r1', connected: 0}).gone).toEqual([])
    const r2 = registry.heartbeat(key, {url: 'http://r2', connected: 0})
    expect(r2.gone).toHaveLength(1)
    expect(r2.relays).toEqual([{url: 'http://r1', region: 'eu'}])
    registry.close()
  })

  it("refuses an unknown key, a region other than the key's and a malformed beat, with codes", () => {
    const {dataDir, registry} = setup()
    const {key} = createRelayKey({dataDir, region: 'eu'})
    expect(() => registry.heartbeat('mrelay_unknown', {url: 'http://r1', connected: 0})).toThrow(
      expect.objectContaining({code: 'UNAUTHENTICATED'}),
    )
    expect(() => registry.heartbeat(undefined, {url: 'http://r1', connected: 0})).toThrow(
      expect.objectContaining({code: 'UNAUTHENTICATED'}),
    )
    expect(() => registry.heartbeat(key, {url: 'http://r1', region: 'us', connected: 0})).toThrow(
      expect.objectContaining({code: 'CONFIG_INVALID'}),
    )
    expect(() => registry.heartbeat(key, {url: 'not a url', connected: 0})).toThrow(
      expect.objectContaining({code: 'VALIDATION_FAILED'}),
    )
    expect(registry.live()).toEqual([])
    registry.close()
  })

  it('picks up keys added to the file while it runs, and drops deleted ones', () => {
    const {dataDir} = setup()
    const keys = new RelayKeyFile(dataDir)
    expect(keys.lookup('mrelay_x')).toBeUndefined()
    const a = createRelayKey({dataDir, region: 'eu'})
    expect(keys.lookup(a.key)?.region).toBe('eu')
    const b = createRelayKey({dataDir, region: 'us'})
    expect(keys.lookup(b.key)?.id).toBe(b.id)
    const file = path.join(dataDir, 'relay-keys.json')
    const kept = (JSON.parse(fs.readFileSync(file, 'utf8')) as {id: string}[]).filter((r) => r.id !== a.id)
    fs.writeFileSync(file, JSON.stringify(kept), {mode: 0o600})
    expect(keys.lookup(a.key)).toBeUndefined()
    expect(keys.lookup(b.key)?.region).toBe('us')
  })

  it('refuses a region that is not a plain name', () => {
    const {dataDir} = setup()
    expect(() => createRelayKey({dataDir, region: 'EU west'})).toThrow(
      expect.objectContaining({code: 'INVALID_ARGUMENT'}),
    )
  })
})
