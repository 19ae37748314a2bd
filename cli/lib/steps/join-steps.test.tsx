import {render} from 'ink-testing-library'
import {describe, expect, it} from 'vitest'
import type {NetworkStatus, PeerStatus} from '../../../shared/protocol/local-api.js'
import {followSteps, settled, stepsOf, type Step} from './join-steps.js'
import {plainReporter} from './reporter.js'
import {StepsView} from './steps-view.js'
import {applyWatchEvent, type Status, type WatchEvent} from '../../../shared/protocol/local-api.js'
import {networkStatus, peerStatus, statusOf} from '../../../shared/testing/status-fixtures.js'

const peer = (n: number, hs: string | null): PeerStatus =>
  peerStatus(n, {lastHandshake: hs, online: hs !== null})
const network = (extra: Partial<NetworkStatus> = {}): NetworkStatus => networkStatus([], extra)
const states = (steps: Step[]) => steps.map((s) => `${s.id}:${s.state}`)

describe('join steps', () => {
  it('waits for approval first, and nothing after it runs before', () => {
    const s = stepsOf(network({nodeStatus: 'pending', peers: [peer(2, null)]}))
    expect(states(s)).toEqual(['approval:running', 'wireguard:pending', 'handshake:pending'])
    expect(settled(s)).toBe(false)
  })

  it('waits for the first handshake once approved and configured, and skips it without peers', () => {
    expect(states(stepsOf(network({peers: [peer(2, null)]})))).toEqual([
      'approval:done',
      'wireguard:done',
      'handshake:running',
    ])
    const none = stepsOf(network())
    expect(states(none)).toEqual(['approval:done', 'wireguard:done', 'handshake:skipped'])
    expect(settled(none)).toBe(true)
  })

  it('names the peer of the first handshake, and fails the approval of a disabled node', () => {
    const s = stepsOf(network({peers: [peer(2, null), peer(3, '2026-12-03T12:00:00Z')]}))
    expect(s[2]).toEqual({id: 'handshake', state: 'done', text: 'first handshake with peer3 (relay)'})
    expect(stepsOf(network({nodeStatus: 'disabled'}))[0]?.state).toBe('failed')
  })

  it('follows the status stream until every step is settled', async () => {
    const events: WatchEvent[] = []
    let push: (ev: WatchEvent) => void = () => undefined
    let closed = false
    const client = {
      watch: (on: (ev: WatchEvent) => void) => {
        push = on
        let end: () => void = () => undefined
        const ended = new Promise<void>((r) => (end = r))
        return {
          ended,
          close: () => {
            closed = true
            end()
          },
        }
      },
    }
    const seen: string[][] = []
    const st = (n: NetworkStatus): Status => statusOf([n])
    const done = followSteps(client as never, 'net1', {
      timeoutMs: 10_000,
      onSteps: (s) => seen.push(states(s)),
    })
    const send = (ev: WatchEvent) => {
      events.push(ev)
      push(ev)
    }
    send({type: 'status', status: st(network({nodeStatus: 'pending', peers: [peer(2, null)]}))})
    send({type: 'network', network: {...network(), peers: undefined} as never})
    send({type: 'peers', networkId: 'net1', changed: [peer(2, '2026-12-03T12:00:00Z')], removed: []})
    const last = await done
    expect(closed).toBe(true)
    expect(states(last)).toEqual(['approval:done', 'wireguard:done', 'handshake:done'])
    expect(seen[0]).toEqual(['approval:running', 'wireguard:pending', 'handshake:pending'])
    expect(events.reduce<Status | undefined>(applyWatchEvent, undefined)?.networks[0]?.nodeStatus).toBe(
      'active',
    )
  })

  it('stops following after the timeout with the steps as they were', async () => {
    const client = {
      watch: (on: (ev: WatchEvent) => void) => {
        on({
          type: 'status',
          status: statusOf([network({nodeStatus: 'pending'})]),
        })
        let end: () => void = () => undefined
        return {ended: new Promise<void>((r) => (end = r)), close: () => end()}
      },
    }
    const last = await followSteps(client as never, 'net1', {timeoutMs: 10, onSteps: () => undefined})
    expect(states(last)[0]).toBe('approval:running')
  })
})

describe('steps output', () => {
  it('prints one plain line per step each time its state changes', () => {
    const lines: string[] = []
    const r = plainReporter((l) => lines.push(l))
    const pending = stepsOf(network({nodeStatus: 'pending'}))
    r.update(pending)
    r.update(pending)
    r.update(stepsOf(network()))
    expect(lines).toEqual([
      'waiting for approval by an admin (`mesh node approve`)…',
      'approved',
      'WireGuard mesh0 up, 10.9.0.1',
      'no peers yet',
    ])
  })

  it('draws a spinner on the running step and marks the others on a terminal', () => {
    const {lastFrame} = render(<StepsView steps={stepsOf(network({peers: [peer(2, null)]}))} />)
    expect(lastFrame()).toMatch(/✓ approved/)
    expect(lastFrame()).toMatch(/✓ WireGuard mesh0 up, 10\.9\.0\.1/)
    expect(lastFrame()).toMatch(/[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] waiting for the first handshake with 1 peer/)
  })
})
