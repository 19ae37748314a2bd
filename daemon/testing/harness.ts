/**
 * Test helpers for meshd: a daemon on a socket in a temp dir with the in-memory driver and
 * quiet logs, and a bounded wait. Test-only: never imported by production code.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {pino} from 'pino'
import {WebSocketServer} from 'ws'
import {generateKeyPair, type KeyPair} from '../keys.js'
import {startDaemon, type DaemonHandle, type DaemonOptions} from '../main.js'
import {StateStore, type NetworkRecord} from '../state-store.js'
import {FakeDriver} from './fake-driver.js'

export interface FakeDaemon extends DaemonHandle {
  readonly fake: FakeDriver
  readonly dir: string
}

export function tempDir(prefix = 'meshd-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

/** A daemon with the fake driver; pass `dir` (and a driver) again to "restart" it on the same state. */
export async function startFakeDaemon(
  opts: {dir?: string; driver?: FakeDriver} & Omit<DaemonOptions, 'driver'> = {},
): Promise<FakeDaemon> {
  const dir = opts.dir ?? tempDir()
  const fake = opts.driver ?? new FakeDriver()
  const d = await startDaemon({
    socket: path.join(dir, 'meshd.sock'),
    stateDir: path.join(dir, 'state'),
    interfacePrefix: 'tmesh',
    logger: pino({level: process.env.MESH_TEST_LOG === '1' ? 'debug' : 'silent'}),
    maxReconnectDelayMs: 500,
    ...opts,
    driver: fake,
  })
  return Object.assign(d, {fake, dir})
}

export {waitFor} from '../../shared/testing/wait-for.js'

/**
 * Writes a joined, up network into `<dir>/state` as a daemon would have (interface tmesh0,
 * 10.9.0.2 in 10.9.0.0/24, an unreachable controller), so a daemon started on `dir` has an
 * interface to build without any controller.
 */
export function seedNetwork(
  dir: string,
  overrides: Partial<NetworkRecord> = {},
): {store: StateStore; keys: KeyPair} {
  const store = new StateStore(path.join(dir, 'state'))
  store.init()
  const keys = generateKeyPair()
  store.createNetwork(
    {
      id: 'net1',
      name: 'lab',
      cidr: '10.9.0.0/24',
      controller: 'http://127.0.0.1:9',
      interface: 'tmesh0',
      nodeId: 'n1',
      nodeName: 'alpha',
      nodeStatus: 'active',
      address: '10.9.0.2',
      publicKey: keys.publicKey,
      listenPort: 51999,
      up: true,
      joinedAt: new Date().toISOString(),
      ...overrides,
    },
    keys.privateKey,
    'cred',
  )
  return {store, keys}
}

let netmapHost = 2
/**
 * A netmap peer entry as a controller sends it: a fresh key, the next address of 10.9.0.0/24
 * (from .3 on, one per call) and a public endpoint; `over` replaces or adds fields (also invalid ones).
 */
export interface NetmapPeerEntry {
  id: string
  name: string
  publicKey: string
  address: string
  endpoints: string[]
  hostname: string
  os: string
  tags: string[]
  [field: string]: unknown
}
export function netmapPeer(id: string, over: Record<string, unknown> = {}): NetmapPeerEntry {
  return {
    id,
    name: id,
    publicKey: generateKeyPair().publicKey,
    address: `10.9.0.${++netmapHost}`,
    endpoints: ['198.51.100.7:51820'],
    hostname: id,
    os: 'linux',
    tags: [],
    ...over,
  }
}

/** A stand-in controller: a WebSocket server on a free loopback port, listening. */
export async function standInController(): Promise<{wss: WebSocketServer; port: number; url: string}> {
  const wss = new WebSocketServer({port: 0, host: '127.0.0.1'})
  await new Promise((r) => wss.once('listening', r))
  const port = (wss.address() as {port: number}).port
  return {wss, port, url: `http://127.0.0.1:${port}`}
}
