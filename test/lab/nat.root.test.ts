/**
 * The NAT lab (`mesh lab up --nat ...`): one lab with a node behind each kind of NAT, and proof
 * that each router behaves as its kind is named, seen with a small UDP probe: the address:port
 * an echo server on the controller's two addresses sees (mapping), what a third address and the
 * server's other address/port can send in (filtering), raw UDP hole punching between every pair
 * of kinds, the counters and block rules the NAT traversal tests build on, and what today's mesh
 * does across it. Negative outcomes are waited on as events too: a router counts each packet it
 * drops, per source, so "it did not arrive" is "the router dropped it", never a timeout.
 */
import fs from 'node:fs'
import {afterAll, describe, expect, it} from 'vitest'
import type {Lab} from '../../cli/lib/lab/lab.js'
import {
  blockUdp,
  blockedUdp,
  packetsOf,
  publicAddress,
  routerCounters,
  unblockUdp,
  type NatKind,
} from '../../cli/lib/lab/nat.js'
import {
  ProbeProcess,
  UdpProbeClient,
  sendUdpOnce,
  startEchoServer,
  tcpConnects,
  udpProbeJs,
} from '../../cli/lib/lab/probe.js'
import {run, waitFor} from '../../cli/lib/lab/sh.js'
import {readState, type LabNode} from '../../cli/lib/lab/state.js'
import {useLab} from './e2e-helpers.js'
import {labSkipReason} from './skip.js'

const skip =
  labSkipReason({tools: ['nft', 'sysctl']}) ?? (fs.existsSync(udpProbeJs()) ? undefined : 'not built')
const KINDS: NatKind[] = ['none', 'cone', 'restricted', 'symmetric', 'udp-blocked']
const NET = 'natlab'
const PRIMARY = '198.51.100.1'
const ALTERNATE = '198.51.100.2'
// The probe's echo ports. Not 3478/3479: the lab's controller serves STUN there itself (and
// endpoint discovery on 51820).
const STUN_PORT = 3578
const ALT_PORT = 3579

describe.skipIf(skip !== undefined)(`NAT lab${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let lab: Lab
  let server: ProbeProcess
  const procs: ProbeProcess[] = []
  /** The second node of each kind: bare hosts (no meshd) for same-kind punching. */
  const twin = new Map<NatKind, LabNode>()

  useLab({nat: KINDS, network: NET, cidr: '10.244.0.0/24'}, async (l) => {
    lab = l
    const ctl = lab.state.controller!
    server = await startEchoServer(ctl.ns, [
      `${PRIMARY}:${STUN_PORT}`,
      `${PRIMARY}:${ALT_PORT}`,
      `${ALTERNATE}:${STUN_PORT}`,
    ])
    procs.push(server)
    for (const kind of ['none', 'cone', 'restricted', 'symmetric'] as const)
      twin.set(kind, await lab.addNode({nat: kind, daemon: false}))
  })
  afterAll(() => {
    for (const p of procs) p.stop()
  })

  const node = (kind: NatKind): LabNode => lab.nodes.find((n) => n.nat === kind)!
  const client = async (n: LabNode): Promise<UdpProbeClient> => {
    const c = await UdpProbeClient.start(n.ns)
    procs.push(c)
    return c
  }
  /** Waits until `n`'s router has dropped more packets from `from` than `before`. */
  const droppedAtRouter = (n: LabNode, from: string, before: number): Promise<number> =>
    waitFor(
      `${n.name}'s ${n.nat} router to drop a packet from ${from}`,
      async () => {
        const now = packetsOf((await routerCounters(lab, n)).droppedFrom, from)
        return now > before ? now : undefined
      },
      {timeoutMs: 5000, intervalMs: 50},
    )
  const droppedFrom = async (n: LabNode, from: string): Promise<number> =>
    packetsOf((await routerCounters(lab, n)).droppedFrom, from)

  it('puts each NAT node on its own private LAN behind its own router, and records it all in lab.json', async () => {
    const state = readState(lab.prefix)!
    expect(state.controller?.alternateUnderlay).toBe(ALTERNATE)
    expect(state.stranger?.address).toBe('198.51.100.3')
    for (const [i, kind] of KINDS.entries()) {
      const n = state.nodes[i]!
      expect(n.nat).toBe(kind)
      expect(publicAddress(n)).toBe(`198.51.100.${11 + i}`)
      if (kind === 'none') {
        expect(n.router).toBeUndefined()
        expect(n.underlay).toBe(`198.51.100.${11 + i}`)
      } else {
        expect(n.underlay).toBe(`172.16.${i + 1}.2`)
        expect(state.namespaces).toContain(n.router!.ns)
      }
      expect(state.namespaces).toContain(n.ns)
    }
    const ctlAddrs = (await run('ip', ['-n', state.controller!.ns, '-br', 'addr'])).stdout
    expect(ctlAddrs).toContain(`${PRIMARY}/24`)
    expect(ctlAddrs).toContain(`${ALTERNATE}/24`)
    // Nothing of the lab in the root namespace.
    const rootAddrs = (await run('ip', ['-br', 'addr'])).stdout
    expect(rootAddrs).not.toMatch(/198\.51\.100\.|172\.16\.\d+\.[12]\//)
  })

  it('reaches the controller over TCP from behind every kind, udp-blocked included', async () => {
    await Promise.all(
      KINDS.map(async (kind) => {
        const n = node(kind)
        const before = (await routerCounters(lab, n)).counters.tcp_out_controller.packets
        expect(await tcpConnects(n.ns, `${PRIMARY}:8080`), kind).toBe(true)
        expect((await routerCounters(lab, n)).counters.tcp_out_controller.packets, kind).toBeGreaterThan(
          before,
        )
      }),
    )
  })

  it('keeps one mapping (port preserved) across destinations behind none, cone and restricted', async () => {
    await Promise.all(
      (['none', 'cone', 'restricted'] as const).map(async (kind) => {
        const n = node(kind)
        const c = await client(n)
        const mapped: string[] = []
        for (const to of [`${PRIMARY}:${STUN_PORT}`, `${PRIMARY}:${ALT_PORT}`, `${ALTERNATE}:${STUN_PORT}`])
          mapped.push((await c.request(to))?.mapped ?? 'no answer')
        expect(mapped, kind).toEqual(Array(3).fill(`${publicAddress(n)}:${c.port}`))
        c.stop()
      }),
    )
  })

  it('gives symmetric a new mapping per destination, stable for each destination', async () => {
    const n = node('symmetric')
    const c = await client(n)
    const ask = async (to: string): Promise<string> => (await c.request(to))?.mapped ?? 'no answer'
    const a = await ask(`${PRIMARY}:${STUN_PORT}`)
    const b = await ask(`${PRIMARY}:${ALT_PORT}`)
    const d = await ask(`${ALTERNATE}:${STUN_PORT}`)
    for (const m of [a, b, d]) expect(m.startsWith(`${publicAddress(n)}:`), m).toBe(true)
    // fully-random: distinct ports (all three equal by chance: ~1 in 4e9).
    expect(new Set([a, b, d]).size).toBeGreaterThan(1)
    expect(await ask(`${PRIMARY}:${STUN_PORT}`)).toBe(a)
    c.stop()
  })

  it('lets unsolicited UDP from a third address and from the server’s other address/port in only behind cone and none', async () => {
    const stranger = await lab.stranger()
    const kinds = ['none', 'cone', 'restricted', 'symmetric'] as const
    await Promise.all(
      kinds.map(async (kind, i) => {
        const n = node(kind)
        const c = await client(n)
        const first = await c.request(`${PRIMARY}:${STUN_PORT}`)
        expect(first, kind).toBeDefined()
        const open = kind === 'none' || kind === 'cone'

        // A third party sends to the mapping the server saw.
        const from = `${stranger.address}:${5000 + i}`
        const beforeStranger = open ? 0 : await droppedFrom(n, stranger.address)
        await sendUdpOnce(stranger.ns, from, first!.mapped, `to ${kind}`)
        if (open) await c.waitEvent((e) => e.from === from, 5000)
        else await droppedAtRouter(n, stranger.address, beforeStranger)

        // RFC 5780 filtering tests: the answer comes from the other address, then the other port.
        for (const replyFrom of [`${ALTERNATE}:${STUN_PORT}`, `${PRIMARY}:${ALT_PORT}`]) {
          const src = replyFrom.split(':')[0]!
          if (open) {
            const r = await c.request(`${PRIMARY}:${STUN_PORT}`, {replyFrom})
            expect(r?.server, `${kind} ${replyFrom}`).toBe(replyFrom)
          } else {
            const before = await droppedFrom(n, src)
            const at = c.events.length
            c.send({to: `${PRIMARY}:${STUN_PORT}`, id: `f-${replyFrom}`, echo: true, replyFrom})
            await droppedAtRouter(n, src, before)
            expect(
              c.events.slice(at).filter((e) => e.data?.id === `f-${replyFrom}`),
              `${kind} ${replyFrom}`,
            ).toEqual([])
          }
        }
        expect(c.unsolicitedFrom(stranger.address).length, kind).toBe(open ? 1 : 0)
        c.stop()
      }),
    )
  })

  it('lets no UDP out from behind udp-blocked, and counts what it dropped', async () => {
    const n = node('udp-blocked')
    const c = await client(n)
    const before = (await routerCounters(lab, n)).counters.udp_out_dropped.packets
    c.send({to: `${PRIMARY}:${STUN_PORT}`, id: 'blocked', echo: true})
    await waitFor(
      'the udp-blocked router to drop the datagram',
      async () => (await routerCounters(lab, n)).counters.udp_out_dropped.packets > before,
      {timeoutMs: 5000, intervalMs: 50},
    )
    const after = await routerCounters(lab, n)
    expect(after.counters.udp_out_controller.packets + after.counters.udp_out_other.packets).toBe(0)
    expect(after.udpOutTo).toEqual({})
    expect(c.events.filter((e) => e.data?.id === 'blocked')).toEqual([])
    c.stop()
  })

  /**
   * Raw UDP hole punching between a and b: each learns its mapping from the echo server (as
   * STUN would), then both send to each other's mapping, two rounds. Each datagram either
   * arrives (an event at the other client) or is dropped by the other router (its per-source
   * counter): both are waited on, nothing is timed. Direct when a datagram got through and the
   * echo came back.
   */
  async function punch(a: LabNode, b: LabNode): Promise<boolean> {
    const [ca, cb] = [await client(a), await client(b)]
    const [ma, mb] = [
      await ca.request(`${PRIMARY}:${STUN_PORT}`),
      await cb.request(`${PRIMARY}:${STUN_PORT}`),
    ]
    if (!ma || !mb) throw new Error(`no mapping for ${a.name} or ${b.name}`)
    const pa = publicAddress(a)
    const pb = publicAddress(b)
    let direct = false
    for (let round = 1; round <= 2 && !direct; round++) {
      const [da, db] = await Promise.all([
        a.router ? droppedFrom(a, pb) : 0,
        b.router ? droppedFrom(b, pa) : 0,
      ])
      const [ia, ib] = [ca.events.length, cb.events.length]
      ca.send({to: mb.mapped, id: `a${round}`, echo: true})
      cb.send({to: ma.mapped, id: `b${round}`, echo: true})
      /** Where the datagram `id` from `sender` (public address) to `recv` (on node n) ended. */
      const outcome = (
        recv: UdpProbeClient,
        at: number,
        n: LabNode,
        sender: string,
        id: string,
        before: number,
      ) =>
        Promise.any([
          recv
            .waitEvent(
              (e) =>
                e.from?.startsWith(`${sender}:`) === true && e.data?.id === id && e.data.mapped === undefined,
              5000,
              at,
            )
            .then(() => 'arrived' as const),
          ...(n.router ? [droppedAtRouter(n, sender, before).then(() => 'dropped' as const)] : []),
        ])
      const [aToB, bToA] = await Promise.all([
        outcome(cb, ib, b, pa, `a${round}`, db),
        outcome(ca, ia, a, pb, `b${round}`, da),
      ])
      if (aToB === 'arrived' || bToA === 'arrived') {
        // The receiver echoes to the datagram's source; the echo rides the same conntrack back.
        const [sender, at, id] = aToB === 'arrived' ? [ca, ia, `a${round}`] : [cb, ib, `b${round}`]
        await sender.waitEvent((e) => e.data?.id === id && e.data.mapped !== undefined, 5000, at)
        direct = true
      }
    }
    ca.stop()
    cb.stop()
    return direct
  }

  it('punches UDP holes between every pair of kinds exactly where theory allows (not symmetric with symmetric or restricted)', async () => {
    const kinds = ['none', 'cone', 'restricted', 'symmetric'] as const
    const results: Record<string, boolean> = {}
    const expected: Record<string, boolean> = {}
    const pairs: Array<[string, LabNode, LabNode]> = []
    for (const [i, k1] of kinds.entries()) {
      for (const k2 of kinds.slice(i)) {
        const key = `${k1}<->${k2}`
        // Symmetric's mapping toward the peer is not the one the server saw: only a peer that
        // lets in what it did not ask for (none, cone) can answer it.
        expected[key] = !(k2 === 'symmetric' && (k1 === 'symmetric' || k1 === 'restricted'))
        pairs.push([key, node(k1), k1 === k2 ? twin.get(k2)! : node(k2)])
      }
    }
    // Pairs run four at a time: each (receiving router, sending address) belongs to one pair
    // only, so their drop counters cannot mix.
    const queue = [...pairs]
    await Promise.all(
      Array.from({length: 4}, async () => {
        for (let p = queue.shift(); p; p = queue.shift()) results[p[0]] = await punch(p[1], p[2])
      }),
    )
    expect(Object.keys(results)).toHaveLength(10)
    expect(results).toEqual(expected)
    expect(Object.values(results).filter(Boolean)).toHaveLength(8)
  })

  it('counts UDP per destination, and blockUdp drops a pair’s UDP both ways until unblockUdp', async () => {
    // The bare twins: no meshd traffic of their own in the counters.
    const pub = twin.get('none')!
    const cone = twin.get('cone')!
    const echo = await startEchoServer(pub.ns, [`${pub.underlay}:${STUN_PORT}`])
    procs.push(echo)
    const c = await client(cone)
    const to = `${pub.underlay}:${STUN_PORT}`
    const before = await routerCounters(lab, cone)
    expect(await c.request(to)).toBeDefined()
    const after = await routerCounters(lab, cone)
    expect(packetsOf(after.udpOutTo, pub.underlay)).toBeGreaterThan(packetsOf(before.udpOutTo, pub.underlay))
    expect(packetsOf(after.udpInFrom, pub.underlay)).toBeGreaterThan(
      packetsOf(before.udpInFrom, pub.underlay),
    )
    expect(after.counters.udp_out_other.packets).toBeGreaterThan(before.counters.udp_out_other.packets)

    try {
      await blockUdp(lab, cone, pub)
      await blockUdp(lab, cone, pub) // idempotent
      expect(await blockedUdp(lab, cone)).toEqual([pub.underlay])
      // Outbound on the established flow: dropped at cone's router.
      let blocked = (await routerCounters(lab, cone)).counters.udp_blocked.packets
      const at = c.events.length
      c.send({to, id: 'while-blocked', echo: true})
      blocked = await waitFor(
        'the block rule to drop the outbound datagram',
        async () => {
          const n = (await routerCounters(lab, cone)).counters.udp_blocked.packets
          return n > blocked ? n : undefined
        },
        {timeoutMs: 5000, intervalMs: 50},
      )
      // Inbound from the blocked address to cone's open mapping (cone would let it in): dropped too.
      await sendUdpOnce(pub.ns, `${pub.underlay}:5001`, `${publicAddress(cone)}:${c.port}`, 'in')
      await waitFor(
        'the block rule to drop the inbound datagram',
        async () => (await routerCounters(lab, cone)).counters.udp_blocked.packets > blocked,
        {timeoutMs: 5000, intervalMs: 50},
      )
      expect(c.events.slice(at)).toEqual([])
    } finally {
      // Also when an expectation failed: later tests must not inherit the block.
      await unblockUdp(lab, cone, pub)
    }
    await unblockUdp(lab, cone, pub) // idempotent
    expect(await blockedUdp(lab, cone)).toEqual([])
    expect(await c.request(to)).toBeDefined()
    c.stop()
    echo.stop()
  })

  it('carries the mesh between the public node and every UDP-capable NAT node once the NAT side speaks first', async () => {
    const pub = node('none')
    for (const kind of ['cone', 'restricted', 'symmetric'] as const) {
      const n = node(kind)
      // Today meshd knows only LAN endpoints: the NAT side's handshake opens its NAT and the
      // public side roams to the mapping (WireGuard). NAT traversal proper is issue 7's work.
      await waitFor(`${kind} -> none over the mesh`, () => lab.ping(n, pub.addresses[NET]!), {
        timeoutMs: 30_000,
        intervalMs: 50,
      })
      await waitFor(`none -> ${kind} over the mesh`, () => lab.ping(pub, n.addresses[NET]!), {
        timeoutMs: 10_000,
        intervalMs: 50,
      })
      const ctr = await routerCounters(lab, n)
      expect(packetsOf(ctr.udpOutTo, pub.underlay), kind).toBeGreaterThan(0)
    }
  })
})
