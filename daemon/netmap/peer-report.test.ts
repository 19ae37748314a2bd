import {describe, expect, it} from 'vitest'
import {NodeReportSchema, REPORT_LIMITS, type PeerReport} from '../../shared/protocol/netmap.js'
import {PeerReporter} from './peer-report.js'

const peer = (i: number, over: Partial<PeerReport> = {}): PeerReport => ({
  id: `node-${i}`,
  online: true,
  endpoint: `198.51.100.${i % 250}:${40000 + i}`,
  ...over,
})
const many = (n: number) => Array.from({length: n}, (_, i) => peer(i))
const peersIn = (frames: {peers?: PeerReport[]}[]) => frames.flatMap((f) => f.peers ?? [])

describe('PeerReporter', () => {
  it('starts a session with reset and the endpoints, then sends only what changed', () => {
    const r = new PeerReporter()
    const first = r.frames(['198.51.100.1:51820'], many(3))
    expect(first).toEqual([{type: 'report', reset: true, endpoints: ['198.51.100.1:51820'], peers: many(3)}])
    // Nothing changed: one heartbeat frame without endpoints or peers.
    expect(r.frames(['198.51.100.1:51820'], many(3))).toEqual([{type: 'report'}])
    const next = many(3)
    next[1] = peer(1, {online: false})
    expect(r.frames(['198.51.100.1:51820'], next)).toEqual([{type: 'report', peers: [next[1]]}])
    expect(r.frames(['198.51.100.2:51820'], next)).toEqual([
      {type: 'report', endpoints: ['198.51.100.2:51820']},
    ])
  })

  it('reports only peers with a handshake: an offline peer is told once, then forgotten', () => {
    const r = new PeerReporter()
    // 2,000 WireGuard peers, 8 of them online: the first report carries the 8.
    const view = many(2000).map((p, i) => (i < 8 ? p : {...p, online: false}))
    expect(peersIn(r.frames([], view)).map((p) => p.id)).toEqual(many(8).map((p) => p.id))
    // A peer goes offline: one entry, then nothing more while it stays offline.
    view[3] = {...view[3]!, online: false}
    expect(peersIn(r.frames([], view))).toEqual([view[3]])
    expect(r.frames([], view)).toEqual([{type: 'report'}])
    // An offline peer whose endpoint moves is still not worth an entry.
    view[3] = {...view[3]!, endpoint: '203.0.113.9:41000'}
    expect(r.frames([], view)).toEqual([{type: 'report'}])
    // It comes back: sent again in full.
    view[3] = {...view[3]!, online: true}
    expect(peersIn(r.frames([], view))).toEqual([view[3]])
    // An offline peer that leaves the view needs no entry either.
    expect(
      r.frames(
        [],
        view.filter((_, i) => i !== 100),
      ),
    ).toEqual([{type: 'report'}])
  })

  it('tells once that a peer left its view', () => {
    const r = new PeerReporter()
    r.frames([], many(3))
    expect(r.frames([], many(2))).toEqual([
      {type: 'report', peers: [{id: 'node-2', online: false, endpoint: null, path: 'none'}]},
    ])
    expect(r.frames([], many(2))).toEqual([{type: 'report'}])
  })

  it('splits 2,000 peers into valid frames of at most 500 and at most 10 frames a report', () => {
    const r = new PeerReporter()
    const frames = r.frames(['198.51.100.1:51820'], many(2000))
    expect(frames).toHaveLength(4)
    for (const f of frames) {
      expect(NodeReportSchema.safeParse(f).success).toBe(true)
      expect(f.peers!.length).toBeLessThanOrEqual(REPORT_LIMITS.peersPerFrame)
      // Far below the controller's 256 KiB frame limit.
      expect(JSON.stringify(f).length).toBeLessThan(64 * 1024)
    }
    expect(frames.filter((f) => f.reset)).toHaveLength(1)
    expect(peersIn(frames).map((p) => p.id)).toEqual(many(2000).map((p) => p.id))

    const big = new PeerReporter({peersPerFrame: 500, framesPerReport: 10})
    const f1 = big.frames([], many(7000))
    expect(f1).toHaveLength(10)
    const f2 = big.frames([], many(7000))
    expect(peersIn(f1).length + peersIn(f2).length).toBe(7000)
    expect(new Set([...peersIn(f1), ...peersIn(f2)].map((p) => p.id)).size).toBe(7000)
    expect(big.frames([], many(7000))).toEqual([{type: 'report'}])
  })

  it('starts over after reset(): everything again, with reset', () => {
    const r = new PeerReporter()
    r.frames(['198.51.100.1:51820'], many(2))
    r.reset()
    expect(r.frames(['198.51.100.1:51820'], many(2))).toEqual([
      {type: 'report', reset: true, endpoints: ['198.51.100.1:51820'], peers: many(2)},
    ])
  })

  it('lists a peer id the node sees twice only once', () => {
    const r = new PeerReporter()
    expect(peersIn(r.frames([], [peer(1), peer(1, {online: false})]))).toEqual([peer(1)])
  })

  it('sends a peer again when its path changes, and not when only its latency jitters', () => {
    const r = new PeerReporter()
    const direct = (latencyMs?: number) =>
      peer(1, {path: 'direct', ...(latencyMs === undefined ? {} : {latencyMs})})
    expect(peersIn(r.frames([], [direct(20)]))).toEqual([direct(20)])
    // Jitter: within 20 % or within 5 ms of the latency last sent.
    for (const ms of [21, 18.5, 23.9, 16.2, 25])
      expect(r.frames([], [direct(ms)])).toEqual([{type: 'report'}])
    // The path changes: sent at once, with the latency of the new path.
    const relayed = peer(1, {path: 'relay', latencyMs: 23, endpoint: '127.0.0.1:40001'})
    expect(peersIn(r.frames([], [relayed]))).toEqual([relayed])
    // A latency change that matters (more than 20 % and more than 5 ms of 23).
    expect(peersIn(r.frames([], [{...relayed, latencyMs: 40}]))).toEqual([{...relayed, latencyMs: 40}])
    // Losing the measurement is a change too; an old node's entry (no path, no latency) is as before.
    expect(peersIn(r.frames([], [{...relayed, latencyMs: undefined}]))).toEqual([
      {id: 'node-1', online: true, endpoint: '127.0.0.1:40001', path: 'relay'},
    ])
    expect(peersIn(r.frames([], [peer(1)]))).toEqual([peer(1)])
  })

  it('lets a slow latency drift through once it adds up', () => {
    const r = new PeerReporter()
    r.frames([], [peer(1, {path: 'direct', latencyMs: 20})])
    const sent: number[] = []
    for (let ms = 20; ms <= 40; ms++)
      for (const p of peersIn(r.frames([], [peer(1, {path: 'direct', latencyMs: ms})])))
        sent.push(p.latencyMs!)
    expect(sent).toEqual([26, 32, 39])
  })

  it('rounds latency to 0.1 ms and clamps it to what the schema accepts', () => {
    const r = new PeerReporter()
    const out = peersIn(
      r.frames(
        [],
        [peer(1, {path: 'direct', latencyMs: 0.04321}), peer(2, {path: 'relay', latencyMs: 75_000})],
      ),
    )
    expect(out.map((p) => p.latencyMs)).toEqual([0, 60_000])
    for (const f of r.frames([], [])) expect(NodeReportSchema.safeParse(f).success).toBe(true)
  })

  it('keeps 2,000 peers whose latency all jitter at once down to a heartbeat', () => {
    const r = new PeerReporter()
    const at = (jitter: number) =>
      many(2000).map((p, i) => ({
        ...p,
        path: i % 3 === 0 ? ('relay' as const) : ('direct' as const),
        latencyMs: 30 + (i % 50) + jitter,
      }))
    expect(peersIn(r.frames([], at(0)))).toHaveLength(2000)
    for (const jitter of [3, -2, 4.9, -4]) expect(r.frames([], at(jitter))).toEqual([{type: 'report'}])
    // Every peer's latency doubles: all of them again, still within the frame bounds.
    const frames = r.frames([], at(80))
    expect(peersIn(frames)).toHaveLength(2000)
    expect(frames.length).toBeLessThanOrEqual(REPORT_LIMITS.framesPerReport)
    for (const f of frames) expect(JSON.stringify(f).length).toBeLessThan(64 * 1024)
  })
})
