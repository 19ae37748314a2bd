/**
 * NAT traversal end to end: meshd nodes behind each kind of NAT router (`mesh lab up --nat`),
 * every pair of kinds among none, cone, restricted and symmetric (10 pairs), and udp-blocked
 * with others. Each pair must ping both ways and end on the path theory allows: direct for 8
 * pairs, the relay for symmetric with symmetric and symmetric with restricted (both sides'
 * mappings depend on the destination, or one side filters what the other cannot predict), and
 * the relay for udp-blocked. The path is read from meshd (WireGuard's endpoint: a relay endpoint
 * is 127.0.0.1) and, for direct pairs, from the router's counters of UDP sent to the peer. The
 * pings of a pair that can never go direct (udp-blocked with cone; symmetric with symmetric and
 * with restricted, which meshd knows from both sides' NAT behaviour) must flow through its first
 * 30 s without a loss: no attempt at a direct path (which could never work) may interrupt the
 * relay, and meshd's status counts none.
 */
import fs from 'node:fs'
import {describe, expect, it} from 'vitest'
import type {Lab} from '../../cli/lib/lab/lab.js'
import {packetsOf, publicAddress, routerCounters, type NatKind} from '../../cli/lib/lab/nat.js'
import {waitFor} from '../../cli/lib/lab/sh.js'
import {isAlive} from '../../cli/lib/lab/procs.js'
import type {LabNode} from '../../cli/lib/lab/state.js'
import {pingStats, useLab} from '../lab/e2e-helpers.js'
import {labSkipReason} from '../lab/skip.js'

const skip = labSkipReason({tools: ['nft', 'sysctl']})
const NET = 'nat'
const KINDS: NatKind[] = ['none', 'cone', 'restricted', 'symmetric', 'udp-blocked']
const PAIR_KINDS = ['none', 'cone', 'restricted', 'symmetric'] as const
/** The ping series of the relay-only pairs: from the pair's start, 10/s, this long. */
const SERIES_S = 30

const expectedPath = (a: NatKind, b: NatKind): 'direct' | 'relay' => {
  const k = [a, b].sort().join('+')
  return k === 'symmetric+symmetric' ||
    k === 'restricted+symmetric' ||
    a === 'udp-blocked' ||
    b === 'udp-blocked'
    ? 'relay'
    : 'direct'
}

describe.skipIf(skip !== undefined)(`NAT traversal${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let lab: Lab
  const twin = new Map<NatKind, LabNode>()

  useLab({nat: KINDS, network: NET, cidr: '10.245.0.0/24'}, async (l) => {
    lab = l
    // The udp-blocked node joined last, a moment ago: its pair with the cone node is in its
    // first seconds. Pings both ways through its first 30 s, read by a test near the end (which
    // waits for what is left of the 30 s: a few seconds, the pairs before it take the rest).
    for (const [x, y] of seriesPairs()) lab.startHelper(x, seriesName(y), seriesArgv(y))
    // A second meshd node of each kind, for the same-kind pairs.
    for (const kind of PAIR_KINDS) {
      const n = await lab.addNode({nat: kind, daemon: true})
      await lab.join(n, NET)
      twin.set(kind, n)
      // The symmetric twin's pair with the first symmetric node starts now: its series too.
      if (kind === 'symmetric')
        for (const [x, y] of twinSeriesPairs()) lab.startHelper(x, seriesName(y), seriesArgv(y))
    }
  })

  const node = (kind: NatKind): LabNode => lab.nodes.find((n) => n.nat === kind)!
  const seriesPairs = (): [LabNode, LabNode][] => [
    [node('udp-blocked'), node('cone')],
    [node('cone'), node('udp-blocked')],
    [node('restricted'), node('symmetric')],
    [node('symmetric'), node('restricted')],
  ]
  const twinSeriesPairs = (): [LabNode, LabNode][] => [
    [node('symmetric'), twin.get('symmetric')!],
    [twin.get('symmetric')!, node('symmetric')],
  ]
  const seriesName = (to: LabNode): string => `ping-series-${to.name}`
  const seriesArgv = (to: LabNode): string[] => [
    'ping',
    '-n',
    '-i',
    '0.1',
    // A count, not a deadline (-w): ping then waits for the last replies instead of counting the
    // last one sent as lost.
    '-c',
    String(SERIES_S * 10),
    to.addresses[NET]!,
  ]
  /** The path and endpoint `from`'s meshd shows for `to`. */
  const pathOf = async (from: LabNode, to: LabNode) => {
    const st = await lab.status(from)
    return st?.networks.find((n) => n.name === NET)?.peers.find((p) => p.name === to.name)
  }

  /** Both ways: ping over the mesh, then the path settles to `want` (within 30 s, plus slack). */
  async function checkPair(a: LabNode, b: LabNode, want: 'direct' | 'relay'): Promise<void> {
    const t0 = Date.now()
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const)
      await waitFor(`${x.nat} ${x.name} -> ${y.nat} ${y.name} ping`, () => lab.ping(x, y.addresses[NET]!), {
        timeoutMs: 45_000,
        intervalMs: 100,
      })
    const firstPingMs = Date.now() - t0
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      const peer = await waitFor(
        `${x.nat} ${x.name} to see ${y.nat} ${y.name} on the ${want} path`,
        async () => {
          const p = await pathOf(x, y)
          if (want === 'relay') return p?.path === 'relay' && /^127\.0\.0\.1:\d+$/.test(p.endpoint ?? '') && p
          return p?.path === want && p
        },
        {timeoutMs: 40_000, intervalMs: 500},
      )
      if (want === 'relay') expect(peer.endpoint ?? '').toMatch(/^127\.0\.0\.1:\d+$/)
      else {
        expect(peer.endpoint ?? '').not.toMatch(/^127\./)
        // The router saw UDP from x to y's public address: the path really is direct.
        const ctr = await routerCounters(lab, x)
        expect(
          packetsOf(ctr.udpOutTo, publicAddress(y)),
          `${x.name} UDP to ${publicAddress(y)}`,
        ).toBeGreaterThan(0)
      }
      // And it still carries traffic on that path. A pair that theory keeps on the relay makes no
      // attempt at a direct path (which would lose what the switching side sends in its window,
      // 200-300 ms): a lost ping fails it at once.
      expect(await lab.ping(x, y.addresses[NET]!, 2)).toBe(true)
      if (want === 'relay') expect(peer.upgradeAttempts ?? 0, `${x.name} upgrade attempts`).toBe(0)
    }
    console.log(
      `[nat] ${a.nat}<->${b.nat}: first ping both ways ${firstPingMs} ms, ${want} within ${Date.now() - t0} ms`,
    )
  }

  for (let i = 0; i < PAIR_KINDS.length; i++)
    for (let j = i; j < PAIR_KINDS.length; j++) {
      const ka = PAIR_KINDS[i]!
      const kb = PAIR_KINDS[j]!
      const want = expectedPath(ka, kb)
      it(`connects ${ka} with ${kb} and ends ${want}`, async () => {
        await checkPair(node(ka), ka === kb ? twin.get(kb)! : node(kb), want)
      })
    }

  for (const other of ['none', 'cone', 'symmetric'] as const)
    it(`connects udp-blocked with ${other} through the relay`, async () => {
      await checkPair(node('udp-blocked'), node(other), 'relay')
    })

  // Each failed attempt at a direct path points one side's WireGuard at a candidate for a window
  // of 200 ms or more, and what it sends then is lost (two or more pings in a row at 10/s); a
  // pair that never gets a direct path must make no attempt at all.
  it("keeps relay-only pairs' pings flowing through their first 30 s without a loss, no attempt at a direct path interrupting the relay", async () => {
    for (const [x, y] of [...seriesPairs(), ...twinSeriesPairs()]) {
      const proc = lab.proc(`${x.name}/${seriesName(y)}`)!
      await waitFor(`the ping series ${x.name} -> ${y.name} to end`, () => !isAlive(proc), {
        timeoutMs: (SERIES_S + 10) * 1000,
        intervalMs: 200,
      })
      const out = fs.readFileSync(proc.log, 'utf8')
      const {sent} = pingStats(out)
      const seen = new Set([...out.matchAll(/icmp_seq=(\d+)/g)].map((m) => Number(m[1])))
      // Counted from the first reply: before it the pair was still being set up.
      const first = Math.min(...seen)
      const lost: number[] = []
      let inRow = 0
      for (let i = first, run = 0; i <= sent; i++) {
        run = seen.has(i) ? 0 : run + 1
        inRow = Math.max(inRow, run)
        if (run > 0) lost.push(i)
      }
      const peer = await pathOf(x, y)
      console.log(
        `[nat] relay-only pair ${x.nat} -> ${y.nat}: ${lost.length} of ${sent - first + 1} pings lost after the first reply (seq ${first})${lost.length ? `: ${lost.join(',')}` : ''}; ${peer?.upgradeAttempts ?? '?'} upgrade attempts, direct blocked: ${peer?.directBlocked ?? '-'}`,
      )
      expect(first, `${x.name} -> ${y.name}: first reply`).toBeLessThan(50)
      expect(lost, `${x.name} -> ${y.name}: pings lost`).toEqual([])
      expect(inRow).toBe(0)
      // Counted by meshd over the whole life of the pair: none led, none joined.
      expect(peer?.upgradeAttempts, `${x.name} -> ${y.name}: upgrade attempts`).toBe(0)
      expect(peer?.path).toBe('relay')
      if (x.nat !== 'udp-blocked' && y.nat !== 'udp-blocked') {
        // Known from both sides' NAT behaviour (the netcheck each meshd runs), not from UDP.
        expect(peer?.directBlocked).toBe(
          x.nat === y.nat ? 'both-endpoint-dependent' : 'endpoint-dependent-vs-port-filtering',
        )
        expect(peer?.nat?.mapping).toBe(
          y.nat === 'symmetric' ? 'address-and-port-dependent' : 'endpoint-independent',
        )
      }
    }
  })

  // Both nodes add each other within milliseconds and both WireGuards send a handshake
  // initiation through the relay at once; unsettled, that race (or an initiation that arrived
  // before the other side knew the peer) waits for WireGuard's 5 s retry. meshd settles it with
  // the initiation tie-break (daemon/relay/initiation-tie-break.ts) and, where a pair is still
  // stuck, re-creates the WireGuard peer 0.7-1.7 s on (PathDecision.poke in daemon/nat/path.ts).
  let freshRounds = 0
  it('answers the first ping of a pair that joined at the same moment well before WireGuard retries a handshake (5 s)', async () => {
    const trials: [NatKind, NatKind][] = [
      ['none', 'cone'],
      ['cone', 'cone'],
      ['restricted', 'symmetric'],
    ]
    // A retried run (vitest --retry) makes networks of its own (the first attempt's stay in the lab).
    const round = freshRounds++
    for (const [i, [ka, kb]] of trials.entries()) {
      // Short names that differ in their first characters: interface names are cut to 15.
      const n = round * trials.length + i
      const net = `fresh${n}`
      await lab.createNetwork(net, `10.246.${n}.0/24`)
      const [a, b] = await Promise.all([lab.addNode({nat: ka}), lab.addNode({nat: kb})])
      await Promise.all([lab.join(a, net), lab.join(b, net)])
      const t0 = Date.now()
      await Promise.all(
        [
          [a, b],
          [b, a],
        ].map(([x, y]) =>
          waitFor(`${x!.nat} -> ${y!.nat} first ping`, () => lab.ping(x!, y!.addresses[net]!, 1), {
            timeoutMs: 4000,
            intervalMs: 20,
          }),
        ),
      )
      console.log(`[nat] fresh ${ka}<->${kb}: first ping both ways ${Date.now() - t0} ms after both joined`)
      await Promise.all([lab.stopDaemon(a), lab.stopDaemon(b)])
    }
  })
})
