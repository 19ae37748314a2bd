import {describe, expect, it} from 'vitest'
import {
  applyWatchEvent,
  type NetworkStatus,
  type PeerStatus,
  type Status,
  type WatchEvent,
} from '../../shared/protocol/local-api.js'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {networkStatus, peerStatus, statusOf} from '../../shared/testing/status-fixtures.js'
import {diffStatus, StatusWatch, type WatchSink} from './watch.js'

const peer = peerStatus
const network = (id: string, peers: PeerStatus[], extra: Partial<NetworkStatus> = {}): NetworkStatus =>
  networkStatus(peers, {id, name: id, ...extra})
const status = statusOf

class Sink implements WatchSink {
  lines: WatchEvent[] = []
  writableLength = 0
  ended = false
  destroyed = false
  private onClose: (() => void) | undefined
  write(chunk: string): boolean {
    for (const l of chunk.split('\n').filter(Boolean)) this.lines.push(JSON.parse(l) as WatchEvent)
    return true
  }
  end(): void {
    this.ended = true
    this.onClose?.()
  }
  destroy(): void {
    this.destroyed = true
    this.onClose?.()
  }
  once(_event: 'close', fn: () => void): unknown {
    this.onClose = fn
    return this
  }
  /** The status a client holds after applying every line. */
  view(): Status | undefined {
    return this.lines.reduce<Status | undefined>(applyWatchEvent, undefined)
  }
}

function setup(initial: Status) {
  const clock = new FakeClock()
  let current = initial
  let reads = 0
  const listeners = new Set<() => void>()
  const watch = new StatusWatch({
    clock,
    log: {warn: () => undefined, debug: () => undefined},
    refreshMs: 1000,
    coalesceMs: 100,
    maxWatchers: 2,
    maxBacklogBytes: 1000,
    source: {
      status: async () => {
        reads++
        return current
      },
      onChange: (fn) => {
        listeners.add(fn)
        return () => listeners.delete(fn)
      },
    },
  })
  const settle = () => new Promise<void>((r) => setImmediate(r))
  return {
    clock,
    watch,
    settle,
    reads: () => reads,
    listeners,
    set: (s: Status) => (current = s),
    signal: () => listeners.forEach((fn) => fn()),
  }
}

describe('diffStatus', () => {
  it('sends only the peers that changed or left, and a network whose own fields changed', () => {
    const before = status([network('a', [peer(2), peer(3), peer(4)])])
    const after = status([network('a', [peer(2), peer(3, {online: true}), peer(5)], {connected: false})])
    const events = diffStatus(before, after)
    expect(events.map((e) => e.type)).toEqual(['network', 'peers'])
    const peers = events[1] as Extract<WatchEvent, {type: 'peers'}>
    expect(peers.changed.map((p) => p.id)).toEqual(['nd_3', 'nd_5'])
    expect(peers.removed).toEqual(['nd_4'])
    expect(events.reduce<Status | undefined>(applyWatchEvent, before)).toEqual(after)
  })

  it('sends the whole status when a network was joined or left', () => {
    const before = status([network('a', [])])
    const after = status([network('a', []), network('b', [])])
    expect(diffStatus(before, after)).toEqual([{type: 'status', status: after}])
  })

  it('sends nothing when nothing changed', () => {
    const s = status([network('a', [peer(2)])])
    expect(diffStatus(s, structuredClone(s))).toEqual([])
  })
})

describe('StatusWatch', () => {
  it('gives a new watcher the whole status, then what changed after a change signal', async () => {
    const t = setup(status([network('a', [peer(2)])]))
    const sink = new Sink()
    expect(t.watch.attach(sink)).toBe(true)
    await t.settle()
    expect(sink.lines).toEqual([{type: 'status', status: status([network('a', [peer(2)])])}])
    t.set(status([network('a', [peer(2, {online: true, path: 'direct'})])]))
    t.signal()
    t.signal()
    t.clock.advance(99)
    await t.settle()
    expect(sink.lines).toHaveLength(1)
    t.clock.advance(1)
    await t.settle()
    expect(sink.lines.slice(1).map((e) => e.type)).toEqual(['peers'])
    expect(sink.view()?.networks[0]?.peers[0]?.path).toBe('direct')
  })

  it('recomputes every refresh interval while watched, and stops when the last watcher leaves', async () => {
    const t = setup(status([network('a', [peer(2)])]))
    const sink = new Sink()
    t.watch.attach(sink)
    await t.settle()
    const reads = t.reads()
    t.set(status([network('a', [peer(2, {rxBytes: 10, rxBytesPerSecond: 10})])]))
    t.clock.advance(1000)
    await t.settle()
    expect(t.reads()).toBe(reads + 1)
    expect(sink.view()?.networks[0]?.peers[0]?.rxBytesPerSecond).toBe(10)
    sink.destroy()
    expect(t.listeners.size).toBe(0)
    t.clock.advance(5000)
    await t.settle()
    expect(t.reads()).toBe(reads + 1)
  })

  it('sends one computation to every watcher, each from its own starting status', async () => {
    const t = setup(status([network('a', [peer(2)])]))
    const first = new Sink()
    t.watch.attach(first)
    await t.settle()
    t.set(status([network('a', [peer(2), peer(3)])]))
    const second = new Sink()
    t.watch.attach(second)
    await t.settle()
    expect(first.view()).toEqual(second.view())
    expect(second.lines).toHaveLength(1)
    expect(first.lines.map((e) => e.type)).toEqual(['status', 'peers'])
  })

  it('refuses watchers over the limit, and cuts off one that does not read', async () => {
    const t = setup(status([network('a', [peer(2)])]))
    const a = new Sink()
    const b = new Sink()
    expect(t.watch.attach(a)).toBe(true)
    expect(t.watch.attach(b)).toBe(true)
    expect(t.watch.attach(new Sink())).toBe(false)
    await t.settle()
    b.writableLength = 5000
    t.set(status([network('a', [peer(2, {online: true})])]))
    t.signal()
    t.clock.advance(100)
    await t.settle()
    expect(b.destroyed).toBe(true)
    expect(a.lines).toHaveLength(2)
    expect(t.watch.size).toBe(1)
  })

  it('ends every stream on close', async () => {
    const t = setup(status([]))
    const a = new Sink()
    t.watch.attach(a)
    await t.settle()
    t.watch.close()
    expect(a.ended).toBe(true)
    expect(t.listeners.size).toBe(0)
    expect(t.watch.attach(new Sink())).toBe(false)
  })
})
