import {describe, expect, it} from 'vitest'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {DEFAULT_TUNING, PeerPath, type WireGuardView} from './path.js'
import {decodeUpgrade, encodeUpgrade, UPGRADE_OPEN, UPGRADE_OPENED, type UpgradeMessage} from './probe.js'
import {
  DEFAULT_UPGRADE_TUNING,
  leads,
  Upgrader,
  type UpgradeLink,
  type UpgradePeer,
  type UpgradeShim,
} from './upgrade.js'
import type {HoldOptions, ShimMode} from '../relay/shim.js'

/**
 * Two nodes, A (the leader: smaller key) and B, on a simulated network: each has a WireGuard view
 * of the other, a relay shim, a prober; the relay carries pings and messages in RELAY_MS, the
 * direct path in DIRECT_MS when the NATs let it (see `nat`). Time is a FakeClock.
 */
const RELAY_MS = 10
const DIRECT_MS = 1
/** One way through the relay from each side (a loaded stream queues in one direction). */
interface RelayDelay {
  A: number
  B: number
}

type Nat =
  /** Direct works whichever side switches. */
  | 'open'
  /** Direct works only when this side's packets go to a peer that opened its NAT toward it. */
  | 'needs-open'
  /** Direct works only when the given side is the one that switches (endpoint-dependent mapping). */
  | {switcher: 'A' | 'B'}
  /** Never. */
  | 'blocked'

interface Side {
  name: 'A' | 'B'
  key: string
  address: string
  /** This side's candidate as the other side sees it. */
  candidate: string
  shimEndpoint: string
  wg: {endpoint: string | undefined; lastHandshakeMs: number; rxBytes: number; txBytes: number}
  shimModes: ShimMode[]
  shimMode: ShimMode
  /** The hold options of each hold. */
  holds: (HoldOptions | undefined)[]
  /** Every endpoint WireGuard was pointed at by the upgrade, and when. */
  pointed: {at: number; endpoint: string}[]
  /** Direct packets this side sent that the NATs dropped. */
  lostDirect: number
  /** Relayed packets delivered / held / dropped at this side's shim. */
  held: number
  dropped: number
  openedToward: Set<string>
  path: PeerPath
  upgrader: Upgrader
  peer: UpgradePeer
  other: Side
  log: string[]
}

function lab(nat: Nat, relay: RelayDelay = {A: RELAY_MS, B: RELAY_MS}) {
  const clock = new FakeClock()
  const mk = (name: 'A' | 'B', key: string, n: number): Side =>
    ({
      name,
      key,
      address: `10.20.0.${n}`,
      candidate: `198.51.100.${n}:5182${n}`,
      shimEndpoint: `127.0.0.1:4700${n}`,
      wg: {endpoint: `127.0.0.1:4700${n}`, lastHandshakeMs: clock.now(), rxBytes: 1000, txBytes: 1000},
      shimModes: [],
      shimMode: 'deliver',
      holds: [],
      pointed: [],
      lostDirect: 0,
      held: 0,
      dropped: 0,
      openedToward: new Set(),
      path: new PeerPath(),
      log: [],
    }) as unknown as Side
  const a = mk('A', 'AAAA', 1)
  const b = mk('B', 'BBBB', 2)
  a.other = b
  b.other = a

  /** Whether a packet that `from` sends directly reaches the other side now. */
  const directPasses = (from: Side): boolean => {
    if (nat === 'open') return true
    if (nat === 'blocked') return false
    if (nat === 'needs-open')
      return from.other.openedToward.has(from.candidate) || from.other.wg.endpoint === from.candidate
    return from.name === nat.switcher || from.other.wg.endpoint === from.candidate
  }
  const onPath = (s: Side): 'relay' | 'direct' => (s.wg.endpoint === s.shimEndpoint ? 'relay' : 'direct')

  /** A packet from `from` to its peer; returns whether it arrived and calls `arrived` then. */
  const sendPacket = (from: Side, arrived: () => void): void => {
    from.wg.txBytes += 100
    const to = from.other
    if (onPath(from) === 'direct') {
      if (!directPasses(from)) return void from.lostDirect++
      clock.setTimeout(() => {
        to.wg.rxBytes += 100
        to.wg.endpoint = from.candidate // WireGuard roams to the source
        arrived()
      }, DIRECT_MS)
      return
    }
    clock.setTimeout(() => {
      if (to.shimMode === 'drop') return void to.dropped++
      if (to.shimMode === 'hold') return void to.held++
      to.wg.rxBytes += 100
      to.wg.endpoint = to.shimEndpoint
      arrived()
    }, relay[from.name])
  }

  const link = (s: Side): UpgradeLink => {
    const shim: UpgradeShim = {
      endpoint: s.shimEndpoint,
      setMode(mode, hold) {
        s.shimModes.push(mode)
        if (mode === 'hold') s.holds.push(hold)
        if (s.shimMode === 'hold' && mode === 'deliver') s.held = 0 // delivered late, not lost
        if (s.shimMode === 'hold' && mode === 'drop') {
          s.dropped += s.held
          s.held = 0
        }
        s.shimMode = mode
      },
    }
    return {
      clock,
      read: async () => ({...s.wg}) as WireGuardView,
      setEndpoint: async (_key, endpoint) => {
        s.pointed.push({at: clock.now(), endpoint})
        s.wg.endpoint = endpoint
      },
      openNat: async (targets) => {
        for (const t of targets) s.openedToward.add(t)
        return async () => {
          for (const t of targets) s.openedToward.delete(t)
        }
      },
      shim: () => shim,
      ping: (_address, timeoutMs) =>
        new Promise((resolve) => {
          const sentAt = clock.now()
          let done = false
          const timer = clock.setTimeout(() => {
            if (!done) resolve(null)
            done = true
          }, timeoutMs)
          sendPacket(s, () =>
            sendPacket(s.other, () => {
              if (done) return
              done = true
              clock.clearTimeout(timer)
              resolve(clock.now() - sentAt)
            }),
          )
        }),
      send: (_address, msg) => {
        const enc = encodeUpgrade(msg)
        sendPacket(s, () => {
          const decoded = decodeUpgrade(enc)!
          void s.other.upgrader.onMessage(s.other.peer, s.other.path, decoded)
        })
      },
      log: {debug: (_o, m) => s.log.push(m), info: (_o, m) => s.log.push(m)},
    }
  }
  for (const s of [a, b]) {
    s.upgrader = new Upgrader(link(s))
    s.peer = {
      id: s.other.name,
      publicKey: s.other.key,
      address: s.other.address,
      candidates: [s.other.candidate],
    }
    s.path.update({candidates: [s.other.candidate], relay: s.shimEndpoint, wg: {...s.wg}, now: clock.now()})
  }
  const settle = async <T>(p: Promise<T>): Promise<T> => {
    let out: {v: T} | undefined
    void p.then((v) => (out = {v}))
    for (let i = 0; i < 400 && out === undefined; i++) await clock.advanceAsync(10)
    if (out === undefined) throw new Error('did not settle')
    // Let the other side's part (its watch or grace timers) finish too.
    await clock.advanceAsync(1_500)
    return out.v
  }
  /** One path check, as meshd's tick does. */
  const tick = (s: Side): void =>
    void s.path.update({
      candidates: [s.other.candidate],
      relay: s.shimEndpoint,
      wg: {...s.wg},
      now: clock.now(),
    })
  const untilDue = async (s: Side): Promise<void> => {
    for (let n = 0; n < 100 && !s.path.upgradeDue(clock.now()); n++) {
      await clock.advanceAsync(500)
      tick(s)
    }
  }
  return {clock, a, b, settle, untilDue}
}

describe('Upgrader', () => {
  it('has the side with the smaller key lead', () => {
    expect(leads('AAAA', 'BBBB')).toBe(true)
    expect(leads('BBBB', 'AAAA')).toBe(false)
  })

  it('moves a relayed pair to direct: the opener opens its NAT, only the other side switches, both end direct', async () => {
    const {clock, a, b, settle} = lab('needs-open')
    expect(a.path.current.state).toBe('relay')
    // A new relayed peer's first upgrade waits firstUpgradeMs (its first packets go undisturbed).
    expect(a.path.upgradeDue(clock.now())).toBe(false)
    clock.advance(DEFAULT_TUNING.firstUpgradeMs)
    expect(a.path.upgradeDue(clock.now())).toBe(true)
    expect(await settle(a.upgrader.lead(a.peer, a.path))).toBe('direct')
    // B switched: it held relayed packets while switching and dropped the late ones.
    expect(b.shimModes.slice(0, 2)).toEqual(['hold', 'drop'])
    expect(b.wg.endpoint).toBe(a.candidate)
    expect(b.path.current.state).toBe('direct')
    // A followed by roaming, and never pointed WireGuard anywhere itself.
    expect(a.wg.endpoint).toBe(b.candidate)
    expect(a.path.current.state).toBe('direct')
    // After the grace both shims deliver again (a later fallback must get through).
    expect(a.shimMode).toBe('deliver')
    expect(b.shimMode).toBe('deliver')
    expect(b.log).toContain('upgraded to direct')
    // One attempt on each side: A led it, B joined it (what `mesh status` shows per peer).
    expect([a.path.upgradeAttempts, b.path.upgradeAttempts]).toEqual([1, 1])
  })

  it('restores the relay after a failed switch, delivering what it held, and backs off', async () => {
    const {clock, a, b, settle, untilDue} = lab('blocked')
    expect(await settle(a.upgrader.lead(a.peer, a.path))).toBe('failed')
    expect(b.wg.endpoint).toBe(b.shimEndpoint)
    expect(b.shimModes).toEqual(['hold', 'deliver'])
    expect(b.dropped).toBe(0)
    expect(a.path.current).toMatchObject({state: 'relay', endpoint: a.shimEndpoint})
    expect(b.path.current).toMatchObject({state: 'relay', endpoint: b.shimEndpoint})
    // Not due again at once: the backoff grows with each failure.
    expect(a.path.upgradeDue(clock.now())).toBe(false)
    const gaps: number[] = []
    let last = clock.now()
    for (let i = 0; i < 6; i++) {
      await untilDue(a)
      gaps.push(clock.now() - last)
      await settle(a.upgrader.lead(a.peer, a.path))
      last = clock.now()
    }
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]).toBeGreaterThanOrEqual(gaps[i - 1]! - 500)
    expect(Math.max(...gaps)).toBeLessThanOrEqual(10_500)
  })

  it('keeps a failed switch short when load inflates the relayed round trip, and holds what the relay brings meanwhile', async () => {
    // A stream through the relay queues 150 ms each way: the relayed round trip is 300 ms, not
    // the 20 ms the path measured before the load.
    const {clock, a, b, settle} = lab('blocked', {A: 150, B: 150})
    a.path.noteLatency(2 * RELAY_MS, clock.now())
    b.path.noteLatency(2 * RELAY_MS, clock.now())
    expect(await settle(a.upgrader.lead(a.peer, a.path))).toBe('failed')
    // B switched (the first attempt opens from A) and came back after the window sized from the
    // unloaded round trip: 2.5 x 20 + 150 = 200 ms, not 2.5 x 300 + 150 = 900 ms.
    expect(b.pointed.map((p) => p.endpoint)).toEqual([a.candidate, b.shimEndpoint])
    const switchedMs = b.pointed[1]!.at - b.pointed[0]!.at
    expect(switchedMs).toBeGreaterThanOrEqual(DEFAULT_UPGRADE_TUNING.minWindowMs)
    expect(switchedMs).toBeLessThanOrEqual(DEFAULT_UPGRADE_TUNING.minWindowMs + 20)
    // The relay's packets for B were held, not dropped, room for a loaded stream's window.
    expect(b.shimModes).toEqual(['hold', 'deliver'])
    expect(b.holds[0]?.maxPackets).toBeGreaterThanOrEqual(1_024)
    expect(b.dropped).toBe(0)
    expect(b.path.current).toMatchObject({state: 'relay', endpoint: b.shimEndpoint})
  })

  it('bounds the switch window when only load-inflated round trips were ever measured', async () => {
    const {a, b, settle} = lab('blocked', {A: 300, B: 300})
    expect(await settle(a.upgrader.lead(a.peer, a.path))).toBe('failed')
    const switchedMs = b.pointed[1]!.at - b.pointed[0]!.at
    // 400 ms at most (was 1,500), whatever the relayed round trip.
    expect(switchedMs).toBeLessThanOrEqual(420)
  })

  it('switches only once the peer had the time to open its NAT, when the message to it waits behind a loaded stream', async () => {
    // A -> B through the relay takes 280 ms (behind A's stream), B -> A 20 ms.
    const {clock, a, b, settle} = lab('needs-open', {A: 280, B: 20})
    a.path.noteLatency(2 * RELAY_MS, clock.now())
    a.path.nextUpgrade(1) // the next attempt is the second: A switches, B opens
    expect(await settle(a.upgrader.lead(a.peer, a.path))).toBe('direct')
    expect(a.pointed[0]?.endpoint).toBe(b.candidate)
    // A's first direct packet already found B's NAT open.
    expect(a.lostDirect).toBe(0)
    expect(a.path.current.state).toBe('direct')
    expect(b.path.current.state).toBe('direct')
  })

  it('alternates which side switches, so a pair that needs the leader to switch goes direct on the second attempt', async () => {
    const {a, b, settle, untilDue} = lab({switcher: 'A'})
    expect(await settle(a.upgrader.lead(a.peer, a.path))).toBe('failed')
    await untilDue(a)
    expect(await settle(a.upgrader.lead(a.peer, a.path))).toBe('direct')
    expect(a.wg.endpoint).toBe(b.candidate)
    expect(a.path.current.state).toBe('direct')
    // B opened its NAT for the attempt and closed it again afterwards.
    expect(b.openedToward.size).toBe(0)
    expect(b.wg.endpoint).toBe(a.candidate)
  })

  it('defers an attempt while the relayed tunnel does not answer, without counting a failure', async () => {
    const {clock, a, settle} = lab('open')
    a.shimMode = 'drop' // nothing gets through the relay to A
    a.other.shimMode = 'drop'
    expect(await settle(a.upgrader.lead(a.peer, a.path))).toBe('deferred')
    expect(a.path.upgradeDue(clock.now())).toBe(true) // deferMs (1 s) passed during settle
    // Nothing was switched or opened: not an attempt.
    expect(a.path.upgradeAttempts).toBe(0)
  })

  it('ignores upgrade messages unless the path is relayed and no attempt runs', async () => {
    const {b, settle} = lab('open')
    b.path.upgradeSucceeded(b.other.candidate)
    const msg: UpgradeMessage = {type: UPGRADE_OPENED, windowMs: 500, index: 0, nonce: Buffer.alloc(8)}
    expect(await settle(b.upgrader.onMessage(b.peer, b.path, msg))).toBe('ignored')
    expect(b.shimModes).toEqual([])
  })

  it('refuses to switch or open for a peer whose direct path is out of reach, leaving the relay untouched', async () => {
    const {clock, b, settle} = lab('blocked')
    b.path.update({
      candidates: b.peer.candidates,
      relay: b.shimEndpoint,
      directOutOfReach: 'udp-blocked-at-peer',
      wg: {...b.wg},
      now: clock.now(),
    })
    for (const type of [UPGRADE_OPENED, UPGRADE_OPEN] as const) {
      const msg: UpgradeMessage = {type, windowMs: 500, index: 0, nonce: Buffer.alloc(8)}
      expect(await settle(b.upgrader.onMessage(b.peer, b.path, msg))).toBe('ignored')
    }
    expect(b.shimModes).toEqual([])
    expect(b.openedToward.size).toBe(0)
    expect(b.wg.endpoint).toBe(b.shimEndpoint)
    expect(b.path.current).toEqual({state: 'relay', endpoint: b.shimEndpoint})
  })

  it('round-trips upgrade messages and refuses other packets as upgrades', () => {
    const msg: UpgradeMessage = {
      type: UPGRADE_OPEN,
      windowMs: 730,
      index: 2,
      nonce: Buffer.from('0123456789abcdef', 'hex'),
    }
    expect(decodeUpgrade(encodeUpgrade(msg))).toEqual(msg)
    const bad = encodeUpgrade(msg)
    bad[5] = 9
    expect(decodeUpgrade(bad)).toBeUndefined()
    expect(decodeUpgrade(encodeUpgrade(msg).subarray(0, 15))).toBeUndefined()
  })
})
