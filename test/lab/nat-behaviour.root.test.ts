/**
 * Each NAT kind of the lab (`mesh lab up --nat`) as two STUN clients see it from behind it:
 * coturn's `turnutils_natdiscovery` (RFC 5780 mapping and filtering discovery, a third party)
 * and `mesh netcheck --json` (through the node's meshd), both against the controller's STUN
 * server (198.51.100.1:3478, alternate 198.51.100.2:3479). Both must name the same behaviour,
 * and it must be the one the kind is built to have (test/lab/README.md, "NAT lab").
 *
 * One lab, one meshd node per kind. Everything is measured once, before the tests, all nodes
 * and both tools at the same time: each tool uses its own sockets, so their flows never share a
 * conntrack entry (nor, behind cone, a learned port), and the STUN server's counters prove that
 * its per-source rate limit dropped none of their requests, so every "no answer" was the NAT's
 * doing. A kind whose measuring failed fails its own test only. No test waits on a timer of its
 * own: "no answer" verdicts come from the tools' own retransmit timeouts, and the router's drop
 * counter shows where the udp-blocked datagrams went.
 */
import {beforeAll, describe, expect, it} from 'vitest'
import type {Lab} from '../../cli/lib/lab/lab.js'
import {STUN_ALTERNATE_PORT, STUN_PORT} from '../../cli/lib/lab/lab.js'
import {publicAddress, routerCounters, type NatKind, type RouterCounters} from '../../cli/lib/lab/nat.js'
import {run, waitFor} from '../../cli/lib/lab/sh.js'
import type {LabNode} from '../../cli/lib/lab/state.js'
import type {FilteringBehaviour, MappingBehaviour} from '../../shared/nat/net-report.js'
import {NetcheckResultSchema, type NetcheckResult} from '../../shared/protocol/local-api.js'
import {
  NATDISCOVERY_BIN,
  natdiscoveryArgs,
  parseNatdiscovery,
  type NatdiscoveryVerdict,
} from '../coturn-natdiscovery.js'
import {dechunk, httpRequest, rawRequest, useLab} from './e2e-helpers.js'
import {labSkipReason} from './skip.js'

const skip = labSkipReason({tools: ['nft', 'sysctl', NATDISCOVERY_BIN]})
const KINDS: NatKind[] = ['none', 'cone', 'restricted', 'symmetric', 'udp-blocked']
const NET = 'natkinds'

const EI = 'endpoint-independent'
const APD = 'address-and-port-dependent'

/** What each kind must look like from behind it (RFC 4787 names; netcheck's NetReport fields). */
const EXPECTED: Record<
  Exclude<NatKind, 'udp-blocked'>,
  {
    behindNat: boolean
    mapping: MappingBehaviour
    filtering: FilteringBehaviour
    /** undefined: not asserted (symmetric picks a random port, which may equal ours by chance). */
    portPreserved: boolean | undefined
    direct: NetcheckResult['direct']
  }
> = {
  none: {behindNat: false, mapping: EI, filtering: EI, portPreserved: true, direct: 'all'},
  cone: {behindNat: true, mapping: EI, filtering: EI, portPreserved: true, direct: 'all'},
  restricted: {behindNat: true, mapping: EI, filtering: APD, portPreserved: true, direct: 'most'},
  // Endpoint-dependent mapping: with an alternate address and port both tools can say which kind
  // (RFC 5780 §4.3 test III), and masquerade fully-random changes the port per address and port.
  symmetric: {behindNat: true, mapping: APD, filtering: APD, portPreserved: undefined, direct: 'limited'},
}

interface Measured {
  coturn: NatdiscoveryVerdict
  coturnOutput: string
  coturnMs: number
  netcheck: NetcheckResult
  netcheckMs: number
  /** The node's router counters (its own for `none`) before and after coturn ran. */
  countersBefore: RouterCounters
  countersAfter: RouterCounters
}

describe.skipIf(skip !== undefined)(
  `NAT kinds seen by coturn and by mesh netcheck${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let lab: Lab
    const measured = new Map<NatKind, Measured | {error: unknown}>()
    let stunBefore: Record<string, number>
    let stunAfter: Record<string, number>

    useLab({nat: KINDS, network: NET, cidr: '10.246.0.0/24'}, (l) => {
      lab = l
    })
    // A hook of its own (after the lab's), with its own time budget: five CLI processes and five
    // coturn runs at once are slow on a loaded 2-core CI machine.
    beforeAll(async () => {
      stunBefore = await stunCounters()
      const t0 = Date.now()
      await Promise.all(
        KINDS.map(async (kind) => {
          const r = await measure(node(kind)).catch((error: unknown) => ({error}))
          measured.set(kind, r)
        }),
      )
      console.log(`[nat-behaviour] all five kinds measured in ${Date.now() - t0} ms`)
      stunAfter = await stunCounters()
      for (const kind of KINDS) {
        const m = measured.get(kind)!
        if ('error' in m) continue
        const c = m.coturn
        const n = m.netcheck
        console.log(
          `[nat-behaviour] ${kind.padEnd(11)} coturn: mapping ${c.mapping ?? '-'}, filtering ${c.filtering ?? '-'}` +
            `${c.noNat ? ', no NAT' : ''}, timeouts ${c.timeouts.mapping}+${c.timeouts.filtering} (${m.coturnMs} ms)` +
            ` | netcheck: udp ${n.udp}, behindNat ${n.behindNat}, mapping ${n.mapping}, filtering ${n.filtering},` +
            ` portPreserved ${n.portPreserved}, direct ${n.direct}, relay ${n.relays.map((x) => x.reachable).join(',')}` +
            ` (${m.netcheckMs} ms)`,
        )
      }
    }, 150_000)

    const node = (kind: NatKind): LabNode => lab.nodes.find((n) => n.nat === kind)!

    /** Runs coturn and netcheck side by side on one node (each on its own sockets). */
    async function measure(n: LabNode): Promise<Measured> {
      const ctl = lab.state.controller!
      const countersBefore = await routerCounters(lab, n)
      const timed = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
        const t = Date.now()
        const v = await f()
        return [v, Date.now() - t]
      }
      const [[r, coturnMs], [netcheck, netcheckMs]] = await Promise.all([
        timed(() =>
          run(NATDISCOVERY_BIN, natdiscoveryArgs({address: ctl.underlay, port: STUN_PORT}, n.underlay), {
            ns: n.ns,
            timeoutMs: 30_000,
          }),
        ),
        timed(() => runNetcheck(n)),
      ])
      const coturnOutput = `${r.stdout}\n${r.stderr}`
      if (r.code !== 0) throw new Error(`${NATDISCOVERY_BIN} exited ${r.code}:\n${coturnOutput}`)
      return {
        coturn: parseNatdiscovery(coturnOutput),
        coturnOutput,
        coturnMs,
        netcheck,
        netcheckMs,
        countersBefore,
        countersAfter: await routerCounters(lab, n),
      }
    }

    /** The controller's STUN counters (its /metrics, through the lab's API socket). */
    async function stunCounters(): Promise<Record<string, number>> {
      const reply = await rawRequest(lab.state.controller!.apiSocket, httpRequest('GET', '/metrics'))
      if (reply.status !== 200) throw new Error(`GET /metrics: HTTP ${reply.status}`)
      const out: Record<string, number> = {}
      for (const m of dechunk(reply).matchAll(/^mesh_stun_packets_total\{([^}]*)\} (\d+)$/gm))
        out[m[1]!] = Number(m[2])
      return out
    }

    /**
     * `mesh netcheck --json` on a node. Waits (bounded) while meshd has no netmap naming the STUN
     * server yet (NETCHECK_UNAVAILABLE); any other failure fails at once.
     */
    async function runNetcheck(n: LabNode): Promise<NetcheckResult> {
      const outcome = await waitFor(
        `mesh netcheck on ${n.name}`,
        async () => {
          const r = await lab.mesh(n, ['netcheck', '--json', '--network', NET], {timeoutMs: 60_000})
          if (r.code === 0) return {result: NetcheckResultSchema.parse(JSON.parse(r.stdout))}
          const out = `${r.stdout}\n${r.stderr}`
          if (/NETCHECK_UNAVAILABLE/.test(out) && /no netmap/.test(out)) return undefined
          return {error: new Error(`mesh netcheck on ${n.name} exited ${r.code}:\n${out}\n${lab.logTail(n)}`)}
        },
        {timeoutMs: 30_000, intervalMs: 200},
      )
      if ('error' in outcome) throw outcome.error
      return outcome.result
    }

    const result = (kind: NatKind): Measured => {
      const m = measured.get(kind)
      if (m === undefined) throw new Error(`${kind} was not measured`)
      if ('error' in m) throw m.error
      return m
    }

    for (const kind of ['none', 'cone', 'restricted', 'symmetric'] as const) {
      const want = EXPECTED[kind]
      it(`${kind}: coturn and netcheck agree on ${want.behindNat ? '' : 'no NAT, '}${want.mapping} mapping and ${want.filtering} filtering`, () => {
        const m = result(kind)
        const n = node(kind)
        const {coturn, netcheck} = m
        const out = m.coturnOutput

        // Each tool against the kind.
        expect({mapping: coturn.mapping, filtering: coturn.filtering, noNat: coturn.noNat}, out).toEqual({
          mapping: want.mapping,
          filtering: want.filtering,
          noNat: !want.behindNat,
        })
        expect(netcheck).toMatchObject({
          udp: true,
          behindNat: want.behindNat,
          mapping: want.mapping,
          filtering: want.filtering,
          direct: want.direct,
          otherAddress: {address: lab.state.controller!.alternateUnderlay, port: STUN_ALTERNATE_PORT},
        })
        if (want.portPreserved !== undefined) expect(netcheck.portPreserved).toBe(want.portPreserved)

        // And against each other: the same verdicts, the same public address (the router's WAN
        // address, or the node's own), and the same port behaviour where it is deterministic.
        expect({mapping: coturn.mapping, filtering: coturn.filtering, noNat: coturn.noNat}).toEqual({
          mapping: netcheck.mapping,
          filtering: netcheck.filtering,
          noNat: netcheck.behindNat === false,
        })
        expect(coturn.reflexive?.address, out).toBe(publicAddress(n))
        expect(netcheck.publicEndpoint?.address).toBe(publicAddress(n))
        if (want.portPreserved !== undefined)
          expect(coturn.reflexive?.port === coturn.local?.port, out).toBe(netcheck.portPreserved)
        expect(coturn.local?.address, out).toBe(n.underlay)

        // The relay (the controller's HTTP port) is reachable from every kind.
        expect(netcheck.relays.length).toBeGreaterThan(0)
        for (const relay of netcheck.relays) expect(relay).toMatchObject({reachable: true, error: null})
      })
    }

    it('udp-blocked: coturn gets no answer and netcheck says UDP is blocked, relay only, relay reachable over TCP', () => {
      const m = result('udp-blocked')
      const {coturn, netcheck, countersBefore, countersAfter} = m
      const out = m.coturnOutput
      // coturn: no answer to the first request of either part, hence no verdict at all.
      expect(coturn, out).toMatchObject({mapping: undefined, filtering: undefined, noNat: false})
      expect(coturn.reflexive, out).toBeUndefined()
      expect(coturn.timeouts.mapping, out).toBeGreaterThan(0)
      expect(coturn.timeouts.filtering, out).toBeGreaterThan(0)
      // The tools' datagrams died at the router, and none ever left for the controller.
      expect(countersAfter.counters.udp_out_dropped.packets).toBeGreaterThan(
        countersBefore.counters.udp_out_dropped.packets,
      )
      expect(countersAfter.counters.udp_out_controller.packets).toBe(0)

      expect(netcheck).toMatchObject({
        udp: false,
        publicEndpoint: null,
        behindNat: null,
        mapping: 'unknown',
        filtering: 'unknown',
        portPreserved: null,
        direct: 'relay-only',
      })
      expect(netcheck.relays.length).toBeGreaterThan(0)
      for (const relay of netcheck.relays) {
        expect(relay).toMatchObject({reachable: true, error: null})
        expect(relay.latencyMs).toBeGreaterThanOrEqual(0)
      }
    })

    it("the controller's STUN server answered every request the tools sent: none rate-limited, malformed or refused", () => {
      const delta = (label: string): number => (stunAfter[label] ?? 0) - (stunBefore[label] ?? 0)
      expect(delta('outcome="answered",reason=""')).toBeGreaterThan(0)
      expect({
        rateLimited: delta('outcome="dropped",reason="rate-limited"'),
        malformed: delta('outcome="dropped",reason="malformed"'),
        notBindingRequest: delta('outcome="dropped",reason="not-binding-request"'),
        errorResponses: delta('outcome="error-response",reason=""'),
      }).toEqual({rateLimited: 0, malformed: 0, notBindingRequest: 0, errorResponses: 0})
    })
  },
)
