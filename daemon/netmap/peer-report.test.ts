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

  it('tells once that a peer left its view', () => {
    const r = new PeerReporter()
    r.frames([], many(3))
    expect(r.frames([], many(2))).toEqual([
      {type: 'report', peers: [{id: 'node-2', online: false, endpoint: null}]},
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
})
