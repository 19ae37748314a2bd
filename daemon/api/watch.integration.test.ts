// GET /v1/watch over meshd's real unix socket (in-memory WireGuard driver, state in a temp dir,
// no controller): the CLI's client gets the whole status, then the changes as they happen.
import fs from 'node:fs'
import http from 'node:http'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {DaemonClient} from '../../cli/lib/daemon-client.js'
import {isMeshError} from '../../shared/errors.js'
import {applyWatchEvent, type Status, type WatchEvent} from '../../shared/protocol/local-api.js'
import {generateKeyPair} from '../keys.js'
import {seedNetwork, startFakeDaemon, tempDir, type FakeDaemon} from '../testing/harness.js'

const peer = (id: string, name: string, n: number) => ({
  id,
  name,
  publicKey: generateKeyPair().publicKey,
  address: `10.9.0.${n}`,
  endpoints: [`198.51.100.${n}:51820`],
  hostname: name,
  os: 'linux',
  tags: [],
})

/** Collects a watch's events and resolves waiters as soon as the view matches. */
function collect(client: DaemonClient) {
  const events: WatchEvent[] = []
  let view: Status | undefined
  const waiters: {check: (s: Status) => boolean; resolve: () => void}[] = []
  const stream = client.watch((ev) => {
    events.push(ev)
    view = applyWatchEvent(view, ev)
    for (const w of [...waiters])
      if (view && w.check(view)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve()
      }
  })
  return {
    events,
    stream,
    view: () => view,
    until: (check: (s: Status) => boolean) =>
      view && check(view)
        ? Promise.resolve()
        : new Promise<void>((resolve) => waiters.push({check, resolve})),
  }
}

describe('meshd status stream (GET /v1/watch)', () => {
  let d: FakeDaemon
  const dir = tempDir()
  beforeAll(async () => {
    const {store, keys: me} = seedNetwork(dir)
    store.saveNetmap('net1', {
      type: 'full',
      version: 1,
      network: {id: 'net1', name: 'lab', cidr: '10.9.0.0/24'},
      self: {id: 'n1', name: 'alpha', publicKey: me.publicKey, address: '10.9.0.2', status: 'active'},
      peers: [peer('nd_b', 'bravo', 3), peer('nd_c', 'charlie', 4)],
    })
    d = await startFakeDaemon({dir})
  })
  afterAll(async () => {
    await d?.stop()
    fs.rmSync(dir, {recursive: true, force: true})
  })

  it('starts with the whole status, the same that GET /v1/status answers', async () => {
    const client = new DaemonClient({socketPath: d.socketPath})
    const w = collect(client)
    try {
      await w.until(() => true)
      expect(w.events[0]?.type).toBe('status')
      const now = await client.status()
      expect(w.view()?.networks.map((n) => n.peers.map((p) => p.name))).toEqual(
        now.networks.map((n) => n.peers.map((p) => p.name)),
      )
      expect(w.view()?.networks[0]?.peers.map((p) => p.name)).toEqual(['bravo', 'charlie'])
    } finally {
      w.stream.close()
      await w.stream.ended
    }
  })

  it('streams a change as it happens: down, then up again, then leave', async () => {
    const client = new DaemonClient({socketPath: d.socketPath})
    const w = collect(client)
    try {
      await w.until((s) => s.networks[0]?.up === true)
      await client.down({network: 'lab'})
      await w.until((s) => s.networks[0]?.up === false)
      expect(w.events.slice(1).some((e) => e.type === 'network')).toBe(true)
      await client.up({network: 'lab'})
      await w.until((s) => s.networks[0]?.up === true && s.networks[0].peers.length === 2)
      await client.leave({network: 'lab'})
      await w.until((s) => s.networks.length === 0)
    } finally {
      w.stream.close()
      await w.stream.ended
    }
  })

  it('refuses a stream without the protocol header, like every route', async () => {
    const res = await new Promise<{status: number; body: string}>((resolve, reject) => {
      const req = http.get({socketPath: d.socketPath, path: '/v1/watch'}, (r) => {
        let body = ''
        r.on('data', (c: Buffer) => (body += c.toString()))
        r.on('end', () => resolve({status: r.statusCode ?? 0, body}))
      })
      req.on('error', reject)
    })
    expect(res.status).toBe(400)
    expect(JSON.parse(res.body).error.code).toBe('PROTOCOL_MISMATCH')
  })

  it('ends with DAEMON_UNREACHABLE when there is no meshd', async () => {
    const w = new DaemonClient({socketPath: `${dir}/nowhere.sock`}).watch(() => undefined)
    const err = await w.ended.catch((e: unknown) => e)
    expect(isMeshError(err) && err.code).toBe('DAEMON_UNREACHABLE')
  })
})
