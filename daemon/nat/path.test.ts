import {describe, expect, it} from 'vitest'
import {DEFAULT_TUNING, PeerPath, type WireGuardView} from './path.js'

const LAN = '10.1.0.7:51820'
const PUB = '198.51.100.7:40001'
const RELAY = '127.0.0.1:47001'
const T0 = 1_000_000

const wg = (endpoint: string | undefined, lastHandshakeMs: number): WireGuardView => ({
  endpoint,
  lastHandshakeMs,
})

describe('PeerPath without a relay', () => {
  it('points at the best candidate first, then the next one after attemptMs without a handshake', () => {
    const p = new PeerPath()
    expect(p.update({candidates: [LAN, PUB], relay: undefined, wg: undefined, now: T0})).toMatchObject({
      state: 'probing',
      endpoint: LAN,
    })
    const t1 = T0 + DEFAULT_TUNING.attemptMs - 1
    expect(p.update({candidates: [LAN, PUB], relay: undefined, wg: wg(LAN, 0), now: t1}).endpoint).toBe(LAN)
    const t2 = T0 + DEFAULT_TUNING.attemptMs
    expect(p.update({candidates: [LAN, PUB], relay: undefined, wg: wg(LAN, 0), now: t2})).toMatchObject({
      state: 'probing',
      endpoint: PUB,
    })
    // A handshake after the attempt began proves the path.
    expect(
      p.update({candidates: [LAN, PUB], relay: undefined, wg: wg(PUB, t2 + 50), now: t2 + 100}),
    ).toMatchObject({
      state: 'direct',
      endpoint: PUB,
    })
  })

  it('does not take a handshake from before the attempt as proof', () => {
    const p = new PeerPath()
    p.update({candidates: [LAN, PUB], relay: undefined, wg: undefined, now: T0})
    const d = p.update({
      candidates: [LAN, PUB],
      relay: undefined,
      wg: wg(LAN, 0),
      now: T0 + DEFAULT_TUNING.attemptMs,
    })
    expect(d.endpoint).toBe(PUB)
    // WireGuard still shows an old handshake (from before this attempt) on the new endpoint.
    expect(
      p.update({
        candidates: [LAN, PUB],
        relay: undefined,
        wg: wg(PUB, T0),
        now: T0 + DEFAULT_TUNING.attemptMs + 1,
      }).state,
    ).toBe('probing')
  })

  it('adopts the endpoint WireGuard roamed to instead of forcing a candidate back', () => {
    const p = new PeerPath()
    p.update({candidates: [LAN], relay: undefined, wg: undefined, now: T0})
    const roamed = '203.0.113.50:61000'
    expect(
      p.update({candidates: [LAN], relay: undefined, wg: wg(roamed, T0 + 10), now: T0 + 20}),
    ).toMatchObject({
      state: 'direct',
      endpoint: roamed,
    })
  })

  it('keeps a live session found at start-up (a daemon restart) as direct', () => {
    const p = new PeerPath()
    expect(
      p.update({candidates: [LAN, PUB], relay: undefined, wg: wg(PUB, T0 - 30_000), now: T0}),
    ).toMatchObject({
      state: 'direct',
      endpoint: PUB,
    })
  })

  it('starts over when a direct path goes quiet for aliveMs, and waits with backoff after a failed round', () => {
    const p = new PeerPath()
    p.update({candidates: [PUB], relay: undefined, wg: wg(PUB, T0), now: T0})
    const dead = T0 + DEFAULT_TUNING.aliveMs
    expect(p.update({candidates: [PUB], relay: undefined, wg: wg(PUB, T0), now: dead})).toMatchObject({
      state: 'probing',
      endpoint: PUB,
    })
    const failed = dead + DEFAULT_TUNING.attemptMs
    expect(p.update({candidates: [PUB], relay: undefined, wg: wg(PUB, T0), now: failed})).toMatchObject({
      state: 'waiting',
      endpoint: PUB,
    })
    // Nothing new until the backoff is over, then a new round.
    expect(
      p.update({
        candidates: [PUB],
        relay: undefined,
        wg: wg(PUB, T0),
        now: failed + DEFAULT_TUNING.retryBaseMs - 1,
      }).state,
    ).toBe('waiting')
    expect(
      p.update({
        candidates: [PUB],
        relay: undefined,
        wg: wg(PUB, T0),
        now: failed + DEFAULT_TUNING.retryBaseMs,
      }).state,
    ).toBe('probing')
  })

  it('is idle with nothing to point at, leaving WireGuard to learn the endpoint', () => {
    const p = new PeerPath()
    expect(p.update({candidates: [], relay: undefined, wg: wg(undefined, 0), now: T0})).toMatchObject({
      state: 'idle',
      endpoint: undefined,
    })
  })

  it('restarts the round at once when the candidates change', () => {
    const p = new PeerPath()
    p.update({candidates: [LAN], relay: undefined, wg: undefined, now: T0})
    expect(p.update({candidates: [PUB, LAN], relay: undefined, wg: wg(LAN, 0), now: T0 + 10})).toMatchObject({
      state: 'probing',
      endpoint: PUB,
    })
  })
})

describe('PeerPath with a relay', () => {
  it('goes through the relay at once and tries direct candidates in the background', () => {
    const p = new PeerPath()
    const d = p.update({candidates: [LAN, PUB], relay: RELAY, wg: undefined, now: T0})
    expect(d).toEqual({state: 'relay', endpoint: RELAY, tryDirect: [LAN, PUB]})
    // Relayed handshakes do not count as direct.
    expect(p.update({candidates: [LAN, PUB], relay: RELAY, wg: wg(RELAY, T0 + 100), now: T0 + 200})).toEqual({
      state: 'relay',
      endpoint: RELAY,
      tryDirect: undefined,
    })
    expect(p.proven(PUB)).toMatchObject({state: 'direct', endpoint: PUB})
    // WireGuard follows; the path stays direct while it is alive.
    expect(
      p.update({candidates: [LAN, PUB], relay: RELAY, wg: wg(PUB, T0 + 900), now: T0 + 1000}).state,
    ).toBe('direct')
  })

  it('backs off between background rounds that prove nothing, up to retryMaxMs', () => {
    const p = new PeerPath()
    let now = T0
    p.update({candidates: [PUB], relay: RELAY, wg: undefined, now})
    const rounds: number[] = []
    for (let i = 0; i < 2000 && rounds.length < 8; i++) {
      now += 1000
      const d = p.update({candidates: [PUB], relay: RELAY, wg: wg(RELAY, now), now})
      expect(d.endpoint).toBe(RELAY)
      if (d.tryDirect) rounds.push(now)
    }
    const gaps = rounds.slice(1).map((t, i) => t - rounds[i]!)
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]).toBeGreaterThanOrEqual(gaps[i - 1]!)
    // The first round (at T0) failed after attemptMs; the next came retryBaseMs later.
    expect(rounds[0]! - T0).toBeLessThanOrEqual(DEFAULT_TUNING.attemptMs + DEFAULT_TUNING.retryBaseMs + 1000)
    expect(Math.max(...gaps)).toBeLessThanOrEqual(DEFAULT_TUNING.attemptMs + DEFAULT_TUNING.retryMaxMs + 1000)
  })

  it('falls back to the relay when a direct path dies, and a new candidate starts a round at once', () => {
    const p = new PeerPath()
    p.update({candidates: [PUB], relay: RELAY, wg: undefined, now: T0})
    p.proven(PUB)
    const dead = T0 + DEFAULT_TUNING.aliveMs + 1
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, T0), now: dead})).toEqual({
      state: 'relay',
      endpoint: RELAY,
      tryDirect: [PUB],
    })
    const later = dead + DEFAULT_TUNING.attemptMs + 1
    expect(
      p.update({candidates: [PUB], relay: RELAY, wg: wg(RELAY, later), now: later}).tryDirect,
    ).toBeUndefined()
    const moved = '198.51.100.8:40002'
    expect(
      p.update({candidates: [moved], relay: RELAY, wg: wg(RELAY, later), now: later + 1}).tryDirect,
    ).toEqual([moved])
  })

  it('adopts a direct endpoint WireGuard roamed to while relayed (the other side switched first)', () => {
    const p = new PeerPath()
    p.update({candidates: [PUB], relay: RELAY, wg: undefined, now: T0})
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, T0 + 500), now: T0 + 600})).toMatchObject({
      state: 'direct',
      endpoint: PUB,
    })
  })
})
