import {describe, expect, it} from 'vitest'
import {BASE_LATENCY_MS, DEFAULT_TUNING, PeerPath, type WireGuardView} from './path.js'

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

describe('PeerPath with a relay (relay first, then upgrades)', () => {
  const up = (p: PeerPath, candidates: string[], w: WireGuardView | undefined, now: number) =>
    p.update({candidates, relay: RELAY, wg: w, now})
  const tx = (endpoint: string, hs: number, rx: number, txBytes: number): WireGuardView => ({
    endpoint,
    lastHandshakeMs: hs,
    rxBytes: rx,
    txBytes,
  })

  it('goes through the relay at once, also when the peer has candidates, and an upgrade is due firstUpgradeMs later', () => {
    const p = new PeerPath()
    expect(up(p, [LAN, PUB], undefined, T0)).toEqual({state: 'relay', endpoint: RELAY})
    // The first packets of a new peer go through the relay undisturbed by a switch window.
    expect(p.upgradeDue(T0 + DEFAULT_TUNING.firstUpgradeMs - 1)).toBe(false)
    expect(p.upgradeDue(T0 + DEFAULT_TUNING.firstUpgradeMs)).toBe(true)
    // Handshakes through the relay are not direct.
    expect(up(p, [LAN, PUB], wg(RELAY, T0 + 100, 500), T0 + 200).state).toBe('relay')
  })

  it('asks for a poke when a relayed peer has not handshaken pokeMs after WireGuard sent to the relay, at most maxPokes times', () => {
    const {pokeMs, maxPokes} = DEFAULT_TUNING
    const p = new PeerPath()
    expect(up(p, [PUB], undefined, T0).poke).toBeUndefined()
    // On WireGuard at the relay, no handshake yet: the clock starts at the first look.
    expect(up(p, [PUB], wg(RELAY, 0), T0 + 100).poke).toBeUndefined()
    expect(up(p, [PUB], wg(RELAY, 0), T0 + 100 + pokeMs - 1).poke).toBeUndefined()
    expect(up(p, [PUB], wg(RELAY, 0), T0 + 100 + pokeMs)).toEqual({state: 'relay', endpoint: RELAY, poke: 1})
    // The re-created peer gets pokeMs of its own, and the pokes stop after maxPokes.
    let now = T0 + 100 + pokeMs
    const pokes = [1]
    for (let i = 0; i < 10; i++) {
      now += pokeMs / 2
      const n = up(p, [PUB], wg(RELAY, 0), now).poke
      if (n !== undefined) pokes.push(n)
    }
    expect(pokes).toEqual(Array.from({length: maxPokes}, (_, i) => i + 1))
    // A handshake, however late, is the end of it.
    const q = new PeerPath()
    up(q, [PUB], wg(RELAY, 0), T0)
    expect(up(q, [PUB], wg(RELAY, T0 + 50), T0 + pokeMs).poke).toBeUndefined()
    expect(up(q, [PUB], wg(RELAY, T0 + 50), T0 + 10 * pokeMs).poke).toBeUndefined()
  })

  it('never pokes a peer that handshook, nor one WireGuard is not sending to the relay', () => {
    const p = new PeerPath()
    up(p, [PUB], wg(RELAY, T0 - 60_000), T0)
    expect(up(p, [PUB], wg(RELAY, T0 - 60_000), T0 + 5 * DEFAULT_TUNING.pokeMs).poke).toBeUndefined()
    // WireGuard still showing another endpoint (the apply has not run yet) is not the relay's fault.
    const q = new PeerPath()
    up(q, [PUB], wg(undefined, 0), T0)
    expect(up(q, [PUB], wg(undefined, 0), T0 + 5 * DEFAULT_TUNING.pokeMs).poke).toBeUndefined()
  })

  it('goes through the relay for a peer without candidates, with no upgrade to try', () => {
    const p = new PeerPath()
    expect(up(p, [], undefined, T0)).toEqual({state: 'relay', endpoint: RELAY})
    expect(p.upgradeDue(T0 + 60_000)).toBe(false)
  })

  it('has a new peer wait for a relay that is opening instead of handshaking toward a candidate', () => {
    const p = new PeerPath()
    const opening = {candidates: [PUB], relay: undefined, relayExpected: true}
    expect(p.update({...opening, wg: undefined, now: T0})).toEqual({state: 'idle', endpoint: undefined})
    expect(p.update({...opening, wg: undefined, now: T0 + 300})).toEqual({state: 'idle', endpoint: undefined})
    // The relay opened: through it, never having pointed WireGuard at the candidate.
    expect(up(p, [PUB], undefined, T0 + 400)).toEqual({state: 'relay', endpoint: RELAY})
    // A relay that does not open in relayWaitMs: the candidates without it.
    const q = new PeerPath()
    q.update({...opening, wg: undefined, now: T0})
    expect(q.update({...opening, wg: undefined, now: T0 + DEFAULT_TUNING.relayWaitMs})).toMatchObject({
      state: 'probing',
      endpoint: PUB,
    })
  })

  it('stops a round of candidates and goes to the relay as soon as the relay is usable', () => {
    const p = new PeerPath()
    expect(p.update({candidates: [PUB], relay: undefined, wg: undefined, now: T0}).endpoint).toBe(PUB)
    expect(up(p, [PUB], wg(PUB, 0), T0 + 500)).toEqual({state: 'relay', endpoint: RELAY})
    // WireGuard still shows the candidate until the relay is applied: that is no roam.
    expect(up(p, [PUB], wg(PUB, T0 + 400, 100), T0 + 600).state).toBe('relay')
    expect(p.upgradeDue(T0 + 600)).toBe(false)
    up(p, [PUB], wg(RELAY, T0 + 400, 200), T0 + 700)
    expect(p.upgradeDue(T0 + 700)).toBe(true)
  })

  it('tries the direct candidates at once when the relay goes away under a relayed peer, whatever the upgrade backoff', () => {
    const p = new PeerPath()
    up(p, [LAN, PUB], wg(RELAY, T0, 1000), T0)
    // An upgrade failed: the next one is due only after the backoff.
    p.upgradeFailed(RELAY, T0 + 100)
    expect(p.upgradeDue(T0 + 200)).toBe(false)
    // The relay is gone (its socket closed): no waiting for the backoff.
    expect(
      p.update({candidates: [LAN, PUB], relay: undefined, wg: wg(RELAY, T0, 1000), now: T0 + 300}),
    ).toEqual({
      state: 'probing',
      endpoint: LAN,
    })
  })

  it('keeps a pair whose NAT behaviour rules direct out on the relay endpoint while the relay socket reconnects, at most relayReturnMs', () => {
    const why = 'endpoint-dependent-vs-port-filtering'
    const path = () => {
      const p = new PeerPath()
      const at = (relayUp: boolean, now: number) =>
        p.update({
          candidates: [LAN, PUB],
          relay: relayUp ? RELAY : undefined,
          relayReconnecting: relayUp ? undefined : RELAY,
          natImpossible: why,
          wg: wg(RELAY, T0, 1000),
          now,
        })
      expect(at(true, T0)).toEqual({state: 'relay', endpoint: RELAY})
      return at
    }
    const onRelay = {state: 'relay', endpoint: RELAY}
    // The relay socket closed (its relay died): no probing of candidates that cannot work; the
    // shim queues what WireGuard sends to the relay endpoint until the socket is back.
    const a = path()
    const lost = T0 + 100
    for (let now = lost; now < lost + DEFAULT_TUNING.relayReturnMs; now += 500)
      expect(a(false, now), `at +${now - lost} ms`).toEqual(onRelay)
    // A relay that does not come back within relayReturnMs: the candidates after all (theory may
    // be wrong, and nothing else carries the pair).
    expect(a(false, lost + DEFAULT_TUNING.relayReturnMs)).toMatchObject({state: 'probing', endpoint: LAN})
    // Back within the bound: still relay, nothing moved, and the next outage gets the whole bound.
    const b = path()
    expect(b(false, lost)).toEqual(onRelay)
    expect(b(true, lost + 3000)).toEqual(onRelay)
    const again = lost + 3100
    expect(b(false, again)).toEqual(onRelay)
    expect(b(false, again + DEFAULT_TUNING.relayReturnMs - 1)).toEqual(onRelay)
  })

  it('probes at once when the relay goes away for good (no socket reconnecting), also for a pair ruled out', () => {
    const p = new PeerPath()
    const why = 'both-endpoint-dependent'
    p.update({candidates: [PUB], relay: RELAY, natImpossible: why, wg: wg(RELAY, T0, 1000), now: T0})
    expect(
      p.update({
        candidates: [PUB],
        relay: undefined,
        natImpossible: why,
        wg: wg(RELAY, T0, 1000),
        now: T0 + 100,
      }),
    ).toMatchObject({state: 'probing', endpoint: PUB})
  })

  it('adopts a direct address WireGuard roamed to while relayed: the other side switched', () => {
    const p = new PeerPath()
    up(p, [PUB], wg(RELAY, T0, 1000), T0)
    const roamed = '203.0.113.50:61000'
    expect(up(p, [PUB], wg(roamed, T0, 1200), T0 + 600)).toEqual({state: 'direct', endpoint: roamed})
  })

  it('takes an address WireGuard keeps showing relayApplyMs after the move to the relay as a roam', () => {
    const p = new PeerPath()
    // A round found the peer directly before the relay came up; the other side keeps sending
    // there, so WireGuard never shows the relay endpoint.
    p.update({candidates: [PUB], relay: undefined, wg: undefined, now: T0})
    expect(up(p, [PUB], wg(PUB, T0 + 100, 100), T0 + 500)).toMatchObject({state: 'relay'})
    expect(up(p, [PUB], wg(PUB, T0 + 900, 300), T0 + 1_000).state).toBe('relay')
    expect(up(p, [PUB], wg(PUB, T0 + 2_400, 600), T0 + 500 + DEFAULT_TUNING.relayApplyMs)).toEqual({
      state: 'direct',
      endpoint: PUB,
    })
  })

  it('leaves WireGuard alone during an upgrade switch and takes the outcome it is told', () => {
    const p = new PeerPath()
    up(p, [PUB], wg(RELAY, T0, 1000), T0)
    p.beginSwitch(PUB, T0 + 10)
    expect(p.current).toEqual({state: 'probing', endpoint: undefined})
    // Whatever WireGuard shows meanwhile (the switch's own endpoint, a roam) changes nothing.
    expect(up(p, [PUB], wg(PUB, T0, 1000), T0 + 100)).toEqual({state: 'probing', endpoint: undefined})
    p.upgradeSucceeded(PUB)
    expect(up(p, [PUB], wg(PUB, T0, 1100), T0 + 300)).toEqual({state: 'direct', endpoint: PUB})
  })

  it('backs off after failed upgrades, doubling from upgradeBaseMs up to upgradeMaxMs, then slowly, and a new candidate resets it', () => {
    const p = new PeerPath()
    let now = T0
    up(p, [PUB], wg(RELAY, now, 1000), now)
    const gaps: number[] = []
    for (let i = 0; i < 10; i++) {
      const start = now
      p.beginSwitch(PUB, now)
      p.upgradeFailed(RELAY, now)
      up(p, [PUB], wg(RELAY, now, 1000), now) // the relay is applied again
      while (!p.upgradeDue(now)) now += 100
      gaps.push(now - start)
    }
    expect(gaps[0]).toBe(DEFAULT_TUNING.upgradeBaseMs)
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]).toBeGreaterThanOrEqual(gaps[i - 1]!)
    expect(
      gaps.slice(0, DEFAULT_TUNING.upgradeSlowAfter).every((g) => g <= DEFAULT_TUNING.upgradeMaxMs),
    ).toBe(true)
    expect(gaps[DEFAULT_TUNING.upgradeSlowAfter - 1]).toBe(DEFAULT_TUNING.upgradeMaxMs)
    expect(gaps.slice(DEFAULT_TUNING.upgradeSlowAfter)).toEqual([
      DEFAULT_TUNING.upgradeSlowMs,
      DEFAULT_TUNING.upgradeSlowMs,
    ])
    p.upgradeFailed(RELAY, now)
    expect(p.upgradeDue(now + 1)).toBe(false)
    up(p, ['198.51.100.8:40002'], wg(RELAY, now, 1000), now + 1)
    expect(p.upgradeDue(now + 1)).toBe(true)
  })

  it('attempts no upgrade while direct is out of reach, and one as soon as it comes within reach', () => {
    const p = new PeerPath()
    const blocked = (w: WireGuardView | undefined, now: number) =>
      p.update({candidates: [PUB], relay: RELAY, directOutOfReach: 'udp-blocked-here', wg: w, now})
    expect(blocked(undefined, T0)).toEqual({state: 'relay', endpoint: RELAY})
    expect(p.directOutOfReach).toBe('udp-blocked-here')
    // However long the pair stays relayed, nothing is ever due: each attempt would be futile and
    // cost the switching side what it sends in its window.
    for (let now = T0; now <= T0 + 10 * 60_000; now += 1_000) {
      expect(blocked(wg(RELAY, T0 + 100, 1000 + now - T0), now)).toEqual({state: 'relay', endpoint: RELAY})
      expect(p.upgradeDue(now)).toBe(false)
    }
    // A mapping was observed: due at once, without the backoff.
    const later = T0 + 10 * 60_000 + 1
    expect(up(p, [PUB], wg(RELAY, T0 + 100, 2000), later)).toEqual({state: 'relay', endpoint: RELAY})
    expect(p.directOutOfReach).toBeUndefined()
    expect(p.upgradeDue(later)).toBe(true)
  })

  it("keeps a new peer's first upgrade firstUpgradeMs away when its mapping arrives a moment after it", () => {
    const p = new PeerPath()
    p.update({candidates: [LAN], relay: RELAY, directOutOfReach: 'udp-blocked-here', wg: undefined, now: T0})
    // 200 ms later the controller observed this node's mapping, and the peer's: new candidates too.
    up(p, [LAN, PUB], wg(RELAY, T0 + 100, 500), T0 + 200)
    expect(p.upgradeDue(T0 + 200)).toBe(false)
    expect(p.upgradeDue(T0 + DEFAULT_TUNING.firstUpgradeMs)).toBe(true)
  })

  it('makes no upgrade attempt for a pair whose NAT behaviour rules direct out, only a re-check every natRecheckMs', () => {
    const p = new PeerPath()
    const why = 'both-endpoint-dependent'
    const sym = (w: WireGuardView | undefined, now: number) =>
      p.update({candidates: [PUB], relay: RELAY, natImpossible: why, wg: w, now})
    expect(sym(undefined, T0)).toEqual({state: 'relay', endpoint: RELAY})
    expect(p.natImpossible).toBe(why)
    // Nothing is due for natRecheckMs, however long the pair runs on the relay.
    const recheck = T0 + DEFAULT_TUNING.natRecheckMs
    for (let now = T0; now < recheck; now += 1_000) {
      sym(wg(RELAY, T0 + 100, 1000 + now - T0), now)
      expect(p.upgradeDue(now), `at +${now - T0} ms`).toBe(false)
    }
    // Then one re-check, in case the classification was wrong; when it fails, the next is as far.
    sym(wg(RELAY, T0 + 100, 5000), recheck)
    expect(p.upgradeDue(recheck)).toBe(true)
    p.nextUpgrade(1)
    p.beginSwitch(PUB, recheck)
    p.upgradeFailed(RELAY, recheck + 300)
    sym(wg(RELAY, recheck + 400, 6000), recheck + 400)
    expect(p.upgradeDue(recheck + 300 + DEFAULT_TUNING.natRecheckMs - 1)).toBe(false)
    expect(p.upgradeDue(recheck + 300 + DEFAULT_TUNING.natRecheckMs)).toBe(true)
  })

  it('re-checks at once when the NAT verdict changes, and not when only the candidates move', () => {
    const p = new PeerPath()
    const step = (candidates: string[], natImpossible: string | undefined, now: number) =>
      p.update({candidates, relay: RELAY, natImpossible, wg: wg(RELAY, T0, 1000), now})
    step([PUB], 'endpoint-dependent-vs-port-filtering', T0)
    // A new mapping of the same NATs: still ruled out, nothing due.
    step(['198.51.100.7:40999'], 'endpoint-dependent-vs-port-filtering', T0 + 60_000)
    expect(p.upgradeDue(T0 + 60_000)).toBe(false)
    // One side's NAT behaviour changed (it moved to a cone NAT): due at once.
    step(['198.51.100.7:40999'], undefined, T0 + 120_000)
    expect(p.natImpossible).toBeUndefined()
    expect(p.upgradeDue(T0 + 120_000)).toBe(true)
    // And ruled out again (another symmetric NAT): natRecheckMs from now.
    step(['198.51.100.7:40999'], 'both-endpoint-dependent', T0 + 130_000)
    expect(p.upgradeDue(T0 + 130_000 + DEFAULT_TUNING.natRecheckMs - 1)).toBe(false)
  })

  it("holds a new path's first upgrade until both NAT behaviours are known, at most natWaitMs", () => {
    // Known a moment later, and ruled out: no attempt at all.
    const p = new PeerPath()
    p.update({candidates: [PUB], relay: RELAY, natPending: true, wg: undefined, now: T0})
    expect(p.upgradeDue(T0 + DEFAULT_TUNING.firstUpgradeMs)).toBe(false)
    const known = T0 + 3_500
    p.update({
      candidates: [PUB],
      relay: RELAY,
      natImpossible: 'both-endpoint-dependent',
      wg: wg(RELAY, T0, 1),
      now: known,
    })
    for (let now = known; now < known + DEFAULT_TUNING.natRecheckMs; now += 5_000)
      expect(p.upgradeDue(now)).toBe(false)
    // Known and allowing direct: due at once.
    const q = new PeerPath()
    q.update({candidates: [PUB], relay: RELAY, natPending: true, wg: undefined, now: T0})
    q.update({candidates: [PUB], relay: RELAY, wg: wg(RELAY, T0, 1), now: known})
    expect(q.upgradeDue(known)).toBe(true)
    // Never known (a peer older than NAT reports): tried as before, natWaitMs after the start.
    const r = new PeerPath()
    for (let now = T0; now < T0 + DEFAULT_TUNING.natWaitMs; now += 500) {
      r.update({candidates: [PUB], relay: RELAY, natPending: true, wg: wg(RELAY, T0, 1), now})
      expect(r.upgradeDue(now)).toBe(false)
    }
    r.update({
      candidates: [PUB],
      relay: RELAY,
      natPending: true,
      wg: wg(RELAY, T0, 1),
      now: T0 + DEFAULT_TUNING.natWaitMs,
    })
    expect(r.upgradeDue(T0 + DEFAULT_TUNING.natWaitMs)).toBe(true)
  })

  it('counts the upgrade attempts it led or joined', () => {
    const p = new PeerPath()
    up(p, [PUB], undefined, T0)
    expect(p.upgradeAttempts).toBe(0)
    p.noteUpgradeAttempt()
    p.noteUpgradeAttempt()
    expect(p.upgradeAttempts).toBe(2)
  })

  it('alternates the side that switches, giving the best candidate two rounds of every three', () => {
    const p = new PeerPath()
    up(p, [LAN, PUB, '10.9.0.1:1'], undefined, T0)
    const plans = Array.from({length: 12}, () => p.nextUpgrade(3))
    expect(plans.map((x) => x.mode)).toEqual(
      Array.from({length: 12}, (_, i) => (i % 2 === 0 ? 'open' : 'switch')),
    )
    expect(plans.map((x) => x.index)).toEqual([0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 2, 2])
  })

  it('follows the other side back to the relay when WireGuard moved there from a direct path', () => {
    const p = new PeerPath()
    up(p, [PUB], wg(PUB, T0 - 1000), T0)
    expect(p.current.state).toBe('direct')
    expect(up(p, [PUB], wg(RELAY, T0 + 900), T0 + 1000)).toMatchObject({state: 'relay', endpoint: RELAY})
  })

  it('asks for a probe when packets go out and nothing comes back, and falls back to the relay after deadMs', () => {
    const p = new PeerPath()
    up(p, [PUB], tx(PUB, T0, 1000, 1000), T0)
    expect(p.current.state).toBe('direct')
    // Sent since the look at T0, nothing back: a probe at once once that is stallMs old.
    const s = T0 + DEFAULT_TUNING.stallMs
    expect(up(p, [PUB], tx(PUB, T0, 1000, 1500), s)).toEqual({state: 'direct', endpoint: PUB, probe: true})
    expect(up(p, [PUB], tx(PUB, T0, 1000, 1800), T0 + DEFAULT_TUNING.deadMs - 1)).toMatchObject({
      state: 'direct',
    })
    // Dead: to the relay, with a probe through it that brings the other side over.
    expect(up(p, [PUB], tx(PUB, T0, 1000, 2000), T0 + DEFAULT_TUNING.deadMs)).toEqual({
      state: 'relay',
      endpoint: RELAY,
      probe: true,
    })
    // WireGuard still shows the dead endpoint until the relay is applied: no roam, no upgrade yet.
    const d = T0 + DEFAULT_TUNING.deadMs
    expect(up(p, [PUB], tx(PUB, T0, 1000, 2100), d + 500).state).toBe('relay')
    up(p, [PUB], tx(RELAY, T0, 1100, 2200), d + 1000)
    expect(p.upgradeDue(d + DEFAULT_TUNING.reupgradeMs)).toBe(true)
  })

  it('takes the keepalive of an idle pair after a quiet minute as a question, not as a dead path', () => {
    const p = new PeerPath()
    up(p, [PUB], tx(PUB, T0, 1000, 1000), T0)
    // A minute without a look (the caller paused), then one keepalive out: at most stallMs old.
    const t = T0 + 60_000
    expect(up(p, [PUB], tx(PUB, T0, 1000, 1032), t)).toEqual({state: 'direct', endpoint: PUB, probe: true})
    // The probe is answered: all is well.
    expect(up(p, [PUB], tx(PUB, T0, 1100, 1080), t + 500)).toEqual({state: 'direct', endpoint: PUB})
    expect(up(p, [PUB], tx(PUB, T0, 1100, 1080), t + DEFAULT_TUNING.deadMs + 500)).toEqual({
      state: 'direct',
      endpoint: PUB,
    })
  })

  it('keeps a direct path whose packets are answered, and an idle one that sends nothing', () => {
    const p = new PeerPath()
    up(p, [PUB], tx(PUB, T0, 1000, 1000), T0)
    for (let i = 1; i <= 20; i++)
      expect(up(p, [PUB], tx(PUB, T0, 1000 + i * 50, 1000 + i * 60), T0 + i * 1000).state).toBe('direct')
    // Idle: nothing either way for a minute.
    for (let i = 21; i <= 80; i++)
      expect(up(p, [PUB], tx(PUB, T0 + 60_000, 2000, 2200), T0 + i * 1000).state).toBe('direct')
  })
})

describe('PeerPath without a relay, when a direct path dies', () => {
  it('starts a new round of candidates after deadMs without an answer', () => {
    const p = new PeerPath()
    p.update({
      candidates: [PUB],
      relay: undefined,
      wg: {endpoint: PUB, lastHandshakeMs: T0, rxBytes: 10, txBytes: 10},
      now: T0,
    })
    expect(p.current.state).toBe('direct')
    p.update({
      candidates: [PUB],
      relay: undefined,
      wg: {endpoint: PUB, lastHandshakeMs: T0, rxBytes: 10, txBytes: 500},
      now: T0 + 1_000,
    })
    const d = p.update({
      candidates: [PUB],
      relay: undefined,
      wg: {endpoint: PUB, lastHandshakeMs: T0, rxBytes: 10, txBytes: 900},
      now: T0 + 1_000 + DEFAULT_TUNING.deadMs,
    })
    expect(d).toEqual({state: 'probing', endpoint: PUB})
  })
})

describe('PeerPath across a key rotation of the peer', () => {
  const directAt = (t: number): PeerPath => {
    const p = new PeerPath()
    p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, t - 10, 500), now: t})
    expect(p.current).toMatchObject({state: 'direct', endpoint: PUB})
    return p
  }

  it('stays direct at the endpoint that worked until the new key handshakes there', () => {
    const p = directAt(T0)
    const t = T0 + 1000
    p.keyRotated(t)
    // Before the apply WireGuard has no entry for the new key; after it, one without a handshake.
    expect(p.update({candidates: [PUB], relay: RELAY, wg: undefined, now: t + 1})).toMatchObject({
      state: 'direct',
      endpoint: PUB,
    })
    const late = t + DEFAULT_TUNING.attemptMs - 1
    expect(p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, 0), now: late})).toMatchObject({
      state: 'direct',
      endpoint: PUB,
    })
    // The new key handshook: the path is judged as always again (alive: direct).
    expect(
      p.update({candidates: [PUB], relay: RELAY, wg: wg(PUB, late + 5, 92), now: late + 10}),
    ).toMatchObject({state: 'direct', endpoint: PUB})
  })

  it('gives the direct path up as usual when the new key never handshakes within attemptMs', () => {
    const p = directAt(T0)
    p.keyRotated(T0 + 1000)
    const d = p.update({
      candidates: [PUB],
      relay: RELAY,
      wg: wg(PUB, 0),
      now: T0 + 1000 + DEFAULT_TUNING.attemptMs,
    })
    expect(d.state).not.toBe('direct')
  })
})

describe('PeerPath latency', () => {
  it("keeps the path's unloaded round trip, the smallest sample of the last one to two minutes, for upgrades to size their window", () => {
    const p = new PeerPath()
    expect(p.baseLatency(T0)).toBeUndefined()
    p.noteLatency(10, T0)
    // A stream starts: the relayed round trip is queueing now; the base stays what the path costs.
    p.noteLatency(300, T0 + 1_000)
    expect(p.latency.ms).toBe(300)
    expect(p.baseLatency(T0 + 1_000)).toBe(10)
    p.noteLatency(250, T0 + BASE_LATENCY_MS + 1_000)
    expect(p.baseLatency(T0 + BASE_LATENCY_MS + 1_000)).toBe(10)
    // Older than two periods: only the recent samples count (the path itself may have changed).
    p.noteLatency(240, T0 + 2 * BASE_LATENCY_MS + 2_000)
    expect(p.baseLatency(T0 + 2 * BASE_LATENCY_MS + 2_000)).toBe(240)
    expect(p.baseLatency(T0 + 5 * BASE_LATENCY_MS)).toBeUndefined()
  })
})
