/**
 * A meshd for `mesh ping` tests, on loopback: network "lab" (127.0.0.0/24, this node 127.0.0.1)
 * with peers beta (127.0.0.2, an echo Prober answers there) and gamma (127.0.0.3, silent), and a
 * second API socket whose ping route sends to the responder's port (port 41820 stays free), and
 * optionally NAT services in the netmap.
 * Test-only.
 */
import fs from 'node:fs'
import path from 'node:path'
import {pino} from 'pino'
import type {NatServices, NetmapFull} from '../../shared/protocol/netmap.js'
import {handlers} from '../api/routes.js'
import {serveApi, type ApiServer} from '../api/server.js'
import {generateKeyPair} from '../keys.js'
import {PingService} from '../nat/ping-service.js'
import {Prober} from '../nat/probe.js'
import {seedNetwork, startFakeDaemon, tempDir, waitFor, type FakeDaemon} from './harness.js'
import {startNetmapController, type NetmapController} from './netmap-controller.js'

export interface PingLab {
  readonly d: FakeDaemon
  /** The API socket whose ping route reaches the responder. */
  readonly socketPath: string
  readonly responder: Prober
  close(): Promise<void>
}

export const peerOf = (name: string, address: string) => ({
  id: `id-${name}`,
  name,
  publicKey: generateKeyPair().publicKey,
  address,
  endpoints: ['198.51.100.5:51820'],
  hostname: name,
  os: 'linux',
  tags: [],
})

/** `nat`: the NAT services the netmap names (for netcheck through the same daemon). */
export async function startPingLab(opts: {nat?: NatServices} = {}): Promise<PingLab> {
  const dir = tempDir()
  let publicKey = ''
  const peers = [peerOf('beta', '127.0.0.2'), peerOf('gamma', '127.0.0.3')]
  const ctl: NetmapController = await startNetmapController((): NetmapFull => ({
    type: 'full',
    version: 1,
    network: {id: 'net1', name: 'lab', cidr: '127.0.0.0/24'},
    self: {id: 'n1', name: 'alpha', publicKey, address: '127.0.0.1', status: 'active'},
    peers,
    ...(opts.nat !== undefined && {nat: opts.nat}),
  }))
  publicKey = seedNetwork(dir, {controller: ctl.url, cidr: '127.0.0.0/24', address: '127.0.0.1'}).keys
    .publicKey
  const d = await startFakeDaemon({dir})
  await waitFor('the netmap', async () => (await d.backend.status()).networks[0]?.peers.length === 2)
  const responder = await Prober.start({address: '127.0.0.2', port: 0})
  const api: ApiServer = await serveApi({
    socketPath: path.join(dir, 'ping.sock'),
    handlers: handlers(d.backend, {
      ping: new PingService({
        target: (n, p) => d.backend.pingTarget(n, p),
        probePort: responder.local.port,
      }),
    }),
    log: pino({level: 'silent'}),
  })
  return {
    d,
    socketPath: api.socketPath,
    responder,
    close: async () => {
      responder.close()
      await api.close()
      await d.stop()
      await ctl.close()
      fs.rmSync(dir, {recursive: true, force: true})
    },
  }
}
