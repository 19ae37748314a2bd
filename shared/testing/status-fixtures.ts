/**
 * meshd status values for tests of what renders or diffs them (dashboards, the status stream,
 * join steps): a peer, a network and a whole status with plausible defaults, overridable.
 */
import type {NetworkStatus, PeerStatus, Status} from '../protocol/local-api.js'

export const testKey = (n: number): string => Buffer.alloc(32, n).toString('base64')

export const peerStatus = (n: number, extra: Partial<PeerStatus> = {}): PeerStatus => ({
  id: `nd_${n}`,
  name: `peer${n}`,
  address: `10.9.0.${n}`,
  publicKey: testKey(n),
  endpoint: null,
  path: 'relay',
  latencyMs: null,
  lastHandshake: null,
  rxBytes: 0,
  txBytes: 0,
  rxBytesPerSecond: 0,
  txBytesPerSecond: 0,
  online: false,
  ...extra,
})

export const networkStatus = (
  peers: PeerStatus[] = [],
  extra: Partial<NetworkStatus> = {},
): NetworkStatus => ({
  id: 'net1',
  name: 'home',
  cidr: '10.9.0.0/24',
  controller: 'http://198.51.100.1:8080',
  interface: 'mesh0',
  nodeId: 'nd_1',
  nodeName: 'laptop',
  nodeStatus: 'active',
  address: '10.9.0.1',
  publicKey: testKey(1),
  listenPort: 51820,
  up: true,
  connected: true,
  netmapVersion: 1,
  lastError: null,
  peers,
  ...extra,
})

export const statusOf = (networks: NetworkStatus[]): Status => ({
  protocolVersion: 1,
  backend: 'fake',
  pid: 1,
  startedAt: '2026-12-03T00:00:00.000Z',
  networks,
})
