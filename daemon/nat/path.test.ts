import {describe, expect, it} from 'vitest'
import {DEFAULT_TUNING, PeerPath, type WireGuardView} from './path.js'

const LAN = '10.1.0.7:51820'
const PUB = '198.51.100.7:40001'
const RELAY = '127.0.0.1:47001'
const T0 = 1_000_000

const wg = (endpoint: string | undefined, lastHandshakeMs: number, rxBytes = 0): WireGuardView => ({
  endpoint,
  lastHandshakeMs,
  rxBytes,
})

describe('PeerPath without a relay', () => {
  it('points at the best candidate first, then the next one after attemptMs without a handshake', () => {
    const p = new PeerPath()
    expect(p.update({candidates: [LAN, PUB], relay: undefined, wg: undefined, now: T0})).toMatchObject({
      state: 'probing',
      endpoint: LAN,
    })
    const t1 = T0 + DEFAULT_TUNING.attemptMs - 1
    // Once WireGuard points at the candidate, the attempt leaves it alone.
    expect(p.update({candidates: [LAN, PUB], relay: undefined, wg: wg(LAN, 0), now: t1})).toEqual({
      state: 'probing',
      endpoint: undefined,
    })
    const t2 = T0 + DEFAULT_TUNING.attemptMs
    expect(p.update({candidates: [LAN, PUB], relay: undefined, wg: wg(LAN, 0), now: t2})).toMatchObject({
      state: 'probing',
      endpoint: PUB,
    })
    // A handshake alone at the candidate is no proof (the peer may have come in elsewhere just
    // before the apply); traffic received there after the first look is.
    expect(
      p.update({candidates: [LAN, PUB], relay: undefined, wg: wg(PUB, t2 + 50, 148), now: t2 + 100}).state,
    ).toBe('probing')
    expect(
      p.update({candidates: [LAN, PUB], relay: undefined, wg: wg(PUB, t2 + 50, 300), now: t2 + 1100}),
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
  const fail = (p: PeerPath, candidates: string[], from: number): number => {
    let now = from
    if (p.current.state === 'idle') p.update({candidates, relay: RELAY, wg: undefined, now})
    for (let i = 0; i < candidates.length; i++) {
      now += DEFAULT_TUNING.attemptMs
      p.update({candidates, relay: RELAY, wg: wg(RELAY, 0), now})
    }
    return now
  }

  it('tries the candidates first and falls back to the relay when none answers', () => {
    const p = new PeerPath()
    expect(p.update({candidates: [LAN, PUB], relay: RELAY, wg: undefined, now: T0}).endpoint).toBe(LAN)
    const t = fail(p, [LAN, PUB], T0)
    expect(p.current).toEqual({state: 'relay', endpoint: RELAY})
    // Handshakes through the relay are not direct.
    expect(p.update({candidates: [LAN, PUB], relay: RELAY, wg: wg(RELAY, t + 100), now: t + 200}).state).toBe(
      'relay',
    )
  })

  it('goes through the relay at once for a peer without candidates', () => {
    const p = new PeerPath()
    expect(p.update({candidates: [], relay: RELAY, wg: undefined, now: T0})).toEqual({
      state: 'relay',
      endpoint: RELAY,
    })
  })

  it('retries direct from the relay with a growing backoff, up to retryMaxMs', () => {
    const p = new PeerPath()
    let now = fail(p, [PUB], T0)
    const rounds: number[] = []
    for (let i = 0; i < 3000 && rounds.length < 8; i++) {
      now += 1000
      const before = p.current.state
      const d = p.update({candidates: [PUB], relay: RELAY, wg: wg(RELAY, now), now})
      if (before === 'relay' && d.state === 'probing') rounds.push(now)
    }
    const gaps = rounds.slice(1).map((t, i) => t - rounds[i]!)
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]).toBeGreaterThanOrEqual(gaps[i - 1]!)
    expect(Math.max(...gaps)).toBeLessThanOrEqual(DEFAULT_TUNING.attemptMs + DEFAULT_TUNING.retryMaxMs + 1000)
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(DEFAULT_TUNING.attemptMs + DEFAULT_TUNING.retryBaseMs)
  })

  it('takes traffic received while WireGuard still points at the candidate as proof of a direct path', () => {
    const p = new PeerPath()
    const t = fail(p, [PUB], T0)
    const retry = t + DEFAULT_TUNING.retryBaseMs
    // An old session (handshake through the relay before the attempt) keeps running.
    const hs = retry - 30_000
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(RELAY, hs, 1000), now: retry}).endpoint).toBe(
      PUB,
    )
    // First look at the candidate: the baseline.
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, hs, 1000), now: retry + 1000}).state).toBe(
      'probing',
    )
    // More bytes, and WireGuard still at the candidate: they came directly.
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, hs, 1500), now: retry + 2000})).toEqual({
      state: 'direct',
      endpoint: PUB,
    })
  })

  it('does not take a relayed handshake that raced the switch to the candidate as proof', () => {
    const p = new PeerPath()
    const t = fail(p, [PUB], T0)
    const retry = t + DEFAULT_TUNING.retryBaseMs
    p.update({candidates: [PUB], relay: RELAY, wg: wg(RELAY, retry - 30_000, 1000), now: retry})
    // A handshake through the relay landed just after the switch was decided; the apply then
    // pointed WireGuard at the candidate again, so it shows the candidate with a fresh handshake.
    expect(
      p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, retry + 10, 1100), now: retry + 1000}).state,
    ).toBe('probing')
    expect(
      p.update({
        candidates: [PUB],
        relay: RELAY,
        wg: wg(PUB, retry + 10, 1100),
        now: retry + DEFAULT_TUNING.attemptMs,
      }),
    ).toEqual({
      state: 'relay',
      endpoint: RELAY,
    })
  })

  it('follows the other side back to the relay when WireGuard moved there from a direct path', () => {
    const p = new PeerPath()
    p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, T0 - 1000), now: T0})
    expect(p.current.state).toBe('direct')
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(RELAY, T0 + 900), now: T0 + 1000})).toEqual({
      state: 'relay',
      endpoint: RELAY,
    })
  })

  it('does not take the candidate WireGuard still shows after a failed round, with a relayed handshake, as direct', () => {
    const p = new PeerPath()
    const t = fail(p, [PUB], T0)
    // Read before the relay endpoint was applied: the candidate, and a handshake through the relay.
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, t - 100, 900), now: t + 50})).toEqual({
      state: 'relay',
      endpoint: RELAY,
    })
  })

  it('leaves WireGuard where relayed packets moved it during an attempt, so they cannot pass for proof', () => {
    const p = new PeerPath()
    const t = fail(p, [PUB], T0)
    const retry = t + DEFAULT_TUNING.retryBaseMs
    const hs = retry - 30_000
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(RELAY, hs, 1000), now: retry}).endpoint).toBe(
      PUB,
    )
    p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, hs, 1000), now: retry + 1000})
    // Relayed packets moved WireGuard back to the relay: no endpoint to apply, no proof.
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(RELAY, hs, 1400), now: retry + 2000})).toEqual({
      state: 'probing',
      endpoint: undefined,
    })
  })

  it('does not take bytes that moved WireGuard back to the relay as proof', () => {
    const p = new PeerPath()
    const t = fail(p, [PUB], T0)
    const retry = t + DEFAULT_TUNING.retryBaseMs
    const hs = retry - 30_000
    p.update({candidates: [PUB], relay: RELAY, wg: wg(RELAY, hs, 1000), now: retry})
    p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, hs, 1000), now: retry + 1000})
    expect(
      p.update({candidates: [PUB], relay: RELAY, wg: wg(RELAY, hs, 1500), now: retry + 2000}).state,
    ).toBe('probing')
    expect(
      p.update({
        candidates: [PUB],
        relay: RELAY,
        wg: wg(RELAY, hs, 2000),
        now: retry + DEFAULT_TUNING.attemptMs,
      }),
    ).toEqual({state: 'relay', endpoint: RELAY})
  })

  it('falls back when a direct path dies, and a new candidate starts a round at once', () => {
    const p = new PeerPath()
    p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, T0), now: T0})
    expect(p.current.state).toBe('direct')
    const dead = T0 + DEFAULT_TUNING.aliveMs + 1
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, T0), now: dead}).state).toBe('probing')
    const t = dead + DEFAULT_TUNING.attemptMs
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, T0), now: t})).toEqual({
      state: 'relay',
      endpoint: RELAY,
    })
    const moved = '198.51.100.8:40002'
    expect(p.update({candidates: [moved], relay: RELAY, wg: wg(RELAY, t), now: t + 1})).toEqual({
      state: 'probing',
      endpoint: moved,
    })
  })

  it('verifies a direct address WireGuard roamed to while relayed (the other side switched first), then adopts it', () => {
    const p = new PeerPath()
    const t = fail(p, [PUB], T0)
    const roamed = '203.0.113.50:61000'
    // WireGuard is left where it roamed while bytes are counted there.
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(roamed, t + 500, 2000), now: t + 600})).toEqual({
      state: 'probing',
      endpoint: undefined,
    })
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(roamed, t + 500, 2300), now: t + 1600})).toEqual(
      {
        state: 'direct',
        endpoint: roamed,
      },
    )
  })
})
