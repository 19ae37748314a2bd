import {render} from 'ink-testing-library'
import {describe, expect, it} from 'vitest'
import type {NetworkStatus, PeerStatus, Status} from '../../../shared/protocol/local-api.js'
import {networkStatus, peerStatus, statusOf} from '../../../shared/testing/status-fixtures.js'
import {columnsFor, fit, StatusDashboard} from './status-dashboard.js'
import {press} from './testing/keys.js'

const NOW = Date.parse('2026-12-03T12:00:00Z')
const peer = (n: number, extra: Partial<PeerStatus> = {}): PeerStatus =>
  peerStatus(n, {
    endpoint: '127.0.0.1:40000',
    latencyMs: 1.6,
    lastHandshake: '2026-12-03T11:59:48Z',
    rxBytes: 4096,
    txBytes: 1024,
    rxBytesPerSecond: 2048,
    txBytesPerSecond: 512,
    online: true,
    ...extra,
  })
const network = (peers: PeerStatus[], extra: Partial<NetworkStatus> = {}): NetworkStatus =>
  networkStatus(peers, {netmapVersion: 3, ...extra})
const status = (networks: NetworkStatus[]): Status => ({...statusOf(networks), backend: 'userspace', pid: 42})

const noop = () => undefined

function view(st: Status | undefined, extra: {width?: number; height?: number} = {}) {
  return (
    <StatusDashboard
      status={st}
      width={extra.width ?? 80}
      height={extra.height ?? 24}
      now={NOW}
      onQuit={noop}
    />
  )
}

describe('StatusDashboard', () => {
  it('shows each network with its address and controller, and a row per peer with path, latency, handshake and rates', () => {
    const st = status([
      network([
        peer(2, {path: 'direct', endpoint: '198.51.100.7:41641', latencyMs: 0.4}),
        peer(3, {online: false, lastHandshake: null, rxBytesPerSecond: 0, txBytesPerSecond: 0}),
      ]),
    ])
    const {lastFrame} = render(view(st, {width: 120}))
    const frame = lastFrame()!
    expect(frame).toContain('1/2 peers online')
    expect(frame).toMatch(/home\s+10\.9\.0\.1\s+mesh0\s+controller connected/)
    expect(frame).toMatch(
      /peer2\s+10\.9\.0\.2\s+direct 198\.51\.100\.7:41641\s+0\.4 ms\s+12s ago\s+2\.0K\/s\s+512B\/s/,
    )
    expect(frame).toMatch(/○ peer3\s+10\.9\.0\.3\s+relay\s+1\.6 ms\s+never\s+0B\/s\s+0B\/s/)
    for (const line of frame.split('\n')) expect([...line].length).toBeLessThanOrEqual(120)
    // On 80 columns every line still fits; the path is cut with an ellipsis, the details show it whole.
    const narrow = render(view(st)).lastFrame()!
    for (const line of narrow.split('\n')) expect([...line].length).toBeLessThanOrEqual(80)
    expect(narrow).toMatch(/peer2\s+10\.9\.0\.2\s+direct 198\.51\.\S*…/)
  })

  it('moves the selection with the arrow keys and shows the selected peer on Enter', async () => {
    const st = status([network([peer(2), peer(3), peer(4)])])
    const r = render(view(st))
    expect(r.lastFrame()).toMatch(/› ● peer2/)
    await press(r, '\u001B[B') // down
    expect(await press(r, '\u001B[B')).toMatch(/› ● peer4/)
    expect(await press(r, '\u001B[A')).toMatch(/› ● peer3/) // up
    const details = await press(r, '\r')
    expect(details).toMatch(/public key\s+AwMDAwMD/)
    expect(details).toMatch(/node id\s+nd_3/)
    expect(await press(r, '\r')).not.toMatch(/public key/)
  })

  it('quits on q', async () => {
    let quit: () => void = () => undefined
    const quitted = new Promise<void>((resolve) => (quit = resolve))
    const {stdin} = render(
      <StatusDashboard status={status([])} width={80} height={24} now={NOW} onQuit={() => quit()} />,
    )
    stdin.write('q')
    await quitted
  })

  it('follows a new status: a peer appears, and one goes from relay to direct', () => {
    const {lastFrame, rerender} = render(view(status([network([peer(2)])]), {width: 120}))
    expect(lastFrame()).not.toContain('peer5')
    rerender(
      view(status([network([peer(2, {path: 'direct', endpoint: '203.0.113.9:5000'}), peer(5)])]), {
        width: 120,
      }),
    )
    expect(lastFrame()).toMatch(/peer2\s+10\.9\.0\.2\s+direct 203\.0\.113\.9:5000/)
    expect(lastFrame()).toContain('peer5')
  })

  it('scrolls a long peer list around the selection to fit the terminal', async () => {
    const peers = Array.from({length: 50}, (_, i) => peer(i + 2))
    const r = render(view(status([network(peers)]), {height: 24}))
    const {lastFrame} = r
    expect(lastFrame()!.split('\n').length).toBeLessThanOrEqual(24)
    expect(lastFrame()).toMatch(/↓ \d+ more/)
    for (let i = 0; i < 30; i++) await press(r, 'j')
    expect(lastFrame()).toMatch(/› ● peer32/)
    expect(lastFrame()).toMatch(/↑ \d+ more/)
    expect(lastFrame()!.split('\n').length).toBeLessThanOrEqual(24)
  })

  it('says when meshd has joined no network, when it waits for meshd, and shows a problem', () => {
    expect(render(view(status([]))).lastFrame()).toContain('has joined no network')
    expect(render(view(undefined)).lastFrame()).toContain('waiting for meshd')
    const {lastFrame} = render(
      <StatusDashboard
        status={status([])}
        problem="cannot reach meshd; retrying…"
        width={80}
        height={24}
        onQuit={noop}
      />,
    )
    expect(lastFrame()).toContain('cannot reach meshd; retrying…')
  })

  it('neutralises escape sequences in names from the network', () => {
    const {lastFrame} = render(view(status([network([peer(2, {name: 'evil\u001B[2Jname'})])])))
    expect(lastFrame()).not.toContain('\u001B[2J')
  })
})

describe('layout helpers', () => {
  it('fits text into exactly the width, with an ellipsis when cut', () => {
    expect(fit('abcdef', 4)).toBe('abc…')
    expect(fit('ab', 4)).toBe('ab  ')
    expect(fit('ab', 4, 'right')).toBe('  ab')
  })

  it('gives name and path what the fixed columns leave on an 80-column terminal', () => {
    const c = columnsFor(80)
    const total = 2 + 2 + 6 + c.name + c.address + c.path + c.latency + c.handshake + c.rx + c.tx
    expect(total).toBeLessThanOrEqual(80)
    expect(c.name).toBeGreaterThanOrEqual(6)
  })
})
