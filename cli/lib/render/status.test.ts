import {describe, expect, it} from 'vitest'
import type {Status} from '../../../shared/protocol/local-api.js'
import {networkStatus, statusOf} from '../../../shared/testing/status-fixtures.js'
import {keyExpiryText} from './resources.js'
import {formatAgo, formatBytes, formatLatency, statusText} from './status.js'

const NOW = Date.parse('2026-11-22T12:00:00Z')

describe('status rendering', () => {
  it('formats byte counts and handshake ages for people', () => {
    expect(formatBytes(0)).toBe('0 B')
    expect(formatBytes(1536)).toBe('1.5 KiB')
    expect(formatBytes(3 * 1024 * 1024)).toBe('3.0 MiB')
    expect(formatAgo(null, NOW)).toBe('never')
    expect(formatAgo('2026-11-22T11:59:48Z', NOW)).toBe('12s ago')
    expect(formatAgo('2026-11-22T11:50:00Z', NOW)).toBe('10m ago')
  })

  it('shows each network with its interface, controller state and a peer table', () => {
    const st: Status = {
      protocolVersion: 1,
      backend: 'userspace',
      pid: 42,
      startedAt: '2026-11-22T11:00:00Z',
      networks: [
        {
          id: 'nw_1',
          name: 'home',
          cidr: '10.7.0.0/24',
          controller: 'http://198.51.100.1:8080',
          interface: 'mesh0',
          nodeId: 'nd_1',
          nodeName: 'laptop',
          nodeStatus: 'active',
          address: '10.7.0.1',
          publicKey: Buffer.alloc(32, 1).toString('base64'),
          listenPort: 51820,
          up: true,
          connected: false,
          netmapVersion: 3,
          lastError: 'cannot reach the controller: connect ECONNREFUSED',
          peers: [
            {
              id: 'nd_2',
              name: 'server',
              address: '10.7.0.2',
              publicKey: Buffer.alloc(32, 2).toString('base64'),
              endpoint: '198.51.100.2:51820',
              path: 'direct',
              lastHandshake: '2026-11-22T11:59:30Z',
              rxBytes: 2048,
              txBytes: 100,
              rxBytesPerSecond: 1500,
              txBytesPerSecond: 20,
              online: true,
            },
          ],
        },
      ],
    }
    const text = statusText(st, NOW)
    expect(text).toContain('WireGuard backend: userspace')
    expect(text).toMatch(/interface:\s+mesh0 \(up, port 51820\)/)
    expect(text).toMatch(/controller:\s+http:\/\/198\.51\.100\.1:8080 \(not connected\)/)
    expect(text).toContain('ECONNREFUSED')
    expect(text).toMatch(/server\s+10\.7\.0\.2\s+direct\s+198\.51\.100\.2:51820/)
    expect(text).toMatch(
      /server\s+10\.7\.0\.2\s+direct\s+198\.51\.100\.2:51820\s+-\s+30s ago\s+2\.0 KiB\s+100 B\s+online/,
    )
  })

  it('says how to join when there is no network', () => {
    expect(
      statusText({protocolVersion: 1, backend: 'kernel', pid: 1, startedAt: '', networks: []}),
    ).toContain('mesh join')
  })
})

describe('latency rendering', () => {
  it('prints a tenth of a millisecond below 10 ms, whole ms above, and "-" when not measured', () => {
    expect(formatLatency(0.42)).toBe('0.4 ms')
    expect(formatLatency(12.6)).toBe('13 ms')
    expect(formatLatency(null)).toBe('-')
    expect(formatLatency(undefined)).toBe('-')
  })

  it('warns when the node key expires within 14 days or has expired, and says what to do', () => {
    const at = (days: number) => new Date(NOW + days * 86_400_000).toISOString()
    const text = (keyExpiresAt: string | null | undefined) =>
      statusText(statusOf([networkStatus([], keyExpiresAt === undefined ? {} : {keyExpiresAt})]), NOW)
    expect(text(at(30))).not.toContain('WARNING')
    expect(text(null)).not.toContain('WARNING')
    expect(text(undefined)).not.toContain('WARNING')
    expect(text(at(3))).toContain(
      "WARNING: this node's key expires 2026-11-25 12:00Z (in 3d, soon); run `mesh rotate-key home`",
    )
    expect(text(at(-1))).toContain(
      "WARNING: this node's key expired; an admin can renew it with `mesh node extend laptop --network home`",
    )
    expect(keyExpiryText(null, new Date(NOW))).toBe('never')
    expect(keyExpiryText(undefined, new Date(NOW))).toBe('-')
    expect(keyExpiryText(at(100), new Date(NOW))).toBe('2027-03-02 12:00Z (in 100d)')
    expect(keyExpiryText(at(-1), new Date(NOW))).toBe('expired')
  })
})
