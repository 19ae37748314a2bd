/**
 * Stand-alone relays end to end (`mesh lab up --nat`): two meshd nodes behind udp-blocked NAT
 * routers (nothing but a relay carries their traffic) and two `mesh relay start` processes on
 * hosts of the lab's internet, `east` and `west`. Node A's router drops TCP to west and B's to
 * east, so each node can reach one stand-alone relay: A homes on east, B on west (the
 * controller's own relay is only a fallback), and their packets cross from relay to relay. The
 * relays register after the nodes joined: the nodes hear of them through a netmap delta
 * carrying `nat`.
 *
 * Then east is killed (SIGKILL) under a ping series: A must move within seconds to the only
 * relay it still reaches, the controller's, whose relay forwards to west; the series must keep
 * flowing (the longest gap is bounded).
 */
import fs from 'node:fs'
import {describe, expect, it} from 'vitest'
import type {Lab} from '../../cli/lib/lab/lab.js'
import {isAlive, signalProc} from '../../cli/lib/lab/procs.js'
import {NAT_TABLE} from '../../cli/lib/lab/nat.js'
import {run, waitFor} from '../../cli/lib/lab/sh.js'
import type {LabNode} from '../../cli/lib/lab/state.js'
import {meshArgv} from '../../cli/lib/self.js'
import type {NetcheckResult} from '../../shared/protocol/local-api.js'
import {longestGap, pingStats, useLab} from '../lab/e2e-helpers.js'
import {labSkipReason} from '../lab/skip.js'

const skip = labSkipReason({tools: ['nft', 'sysctl']})
const NET = 'relays'
const RELAY_PORT = 8443
/** The ping series across the kill: 10/s for this long. */
const SERIES_S = 25

describe.skipIf(skip !== undefined)(`stand-alone relays${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let lab: Lab
  const hosts: LabNode[] = []

  useLab({nat: ['udp-blocked', 'udp-blocked'], network: NET, cidr: '10.246.0.0/24'}, async (l) => {
    lab = l
    const ctl = lab.state.controller!
    for (let i = 0; i < 2; i++) hosts.push(await lab.addNode({nat: 'none', daemon: false}))
    // A reaches only east (hosts[0]) of the two, B only west (hosts[1]).
    const [a, b] = nodes()
    for (const [n, unreachable] of [
      [a!, hosts[1]!],
      [b!, hosts[0]!],
    ] as const) {
      const r = await run(
        'nft',
        [
          'insert',
          'rule',
          'ip',
          NAT_TABLE,
          'forward',
          'ip',
          'daddr',
          unreachable.underlay,
          'meta',
          'l4proto',
          'tcp',
          'drop',
        ],
        {ns: n.router!.ns, timeoutMs: 10_000},
      )
      expect(r.code, r.stderr).toBe(0)
    }
    for (const [i, region] of ['east', 'west'].entries()) {
      const host = hosts[i]!
      const {key} = await lab.admin().createRelayKey({region})
      lab.startHelper(host, 'relay', [
        ...meshArgv(),
        'relay',
        'start',
        '--controller',
        ctl.url,
        '--relay-key',
        key,
        '--listen',
        `${host.underlay}:${RELAY_PORT}`,
        '--region',
        region,
      ])
    }
  })

  const nodes = (): LabNode[] => lab.nodes.filter((n) => n.nat === 'udp-blocked')
  const relayUrl = (h: LabNode) => `http://${h.underlay}:${RELAY_PORT}`

  async function netcheck(n: LabNode): Promise<NetcheckResult> {
    const r = await lab.mesh(n, ['netcheck', '--json', '--network', NET], {timeoutMs: 30_000})
    expect(r.code, r.stderr).toBe(0)
    return JSON.parse(r.stdout) as NetcheckResult
  }

  /** The base URL of a node's home relay, as `mesh netcheck` marks it. */
  const homeOf = async (n: LabNode): Promise<string | undefined> => {
    const home = (await netcheck(n)).relays.find((r) => r.home === true)
    return home?.url.replace(/\/healthz$/, '')
  }

  it('lists every relay with its latency in netcheck; nodes home on different relays and reach each other', async () => {
    const [a, b] = nodes()
    for (const [n, host] of [
      [a!, hosts[0]!],
      [b!, hosts[1]!],
    ] as const) {
      const home = await waitFor(
        `${n.name} to home on ${relayUrl(host)}`,
        async () => ((await homeOf(n)) === relayUrl(host) ? relayUrl(host) : undefined),
        {timeoutMs: 30_000, intervalMs: 500},
      )
      const r = await netcheck(n)
      expect(r.relays.map((x) => x.region).sort()).toEqual(['default', 'east', 'west'])
      for (const x of r.relays)
        expect(x.reachable, JSON.stringify(x)).toBe(
          x.region === 'default' || x.url.startsWith(relayUrl(host)),
        )
      console.log(
        `[e2e] ${n.name} home ${home}: ${r.relays.map((x) => `${x.region} ${x.latencyMs} ms`).join(', ')}`,
      )
    }
    expect(await lab.ping(a!, b!.addresses[NET]!, 5)).toBe(true)
    expect(await lab.ping(b!, a!.addresses[NET]!, 5)).toBe(true)
  })

  it("moves a killed relay's node within seconds to the relay it still reaches, under traffic", async () => {
    const [a, b] = nodes()
    const victim = hosts[0]!
    expect(await homeOf(a!)).toBe(relayUrl(victim))
    lab.startHelper(a!, 'series', ['ping', '-n', '-i', '0.1', '-w', String(SERIES_S), b!.addresses[NET]!])
    const series = lab.proc(`${a!.name}/series`)!
    // Let the series run a few seconds on the old relay first.
    await waitFor(
      'replies over the old relay',
      () => /icmp_seq=30 /.test(fs.readFileSync(series.log, 'utf8')),
      {
        timeoutMs: 15_000,
        intervalMs: 100,
      },
    )
    const proc = lab.proc(`${victim.name}/relay`)!
    const t0 = Date.now()
    expect(signalProc(proc, 'SIGKILL')).toBe(true)
    await waitFor('the relay to die', () => !isAlive(proc), {timeoutMs: 5_000, intervalMs: 20})
    // A reaches west no more than before: the controller's relay is its fallback.
    await waitFor(
      `${a!.name} to home on the controller's relay`,
      async () => (await homeOf(a!)) === lab.state.controller!.url,
      {
        timeoutMs: 15_000,
        intervalMs: 200,
      },
    )
    const moved = Date.now() - t0
    expect(await homeOf(b!)).toBe(relayUrl(hosts[1]!))
    await waitFor('the ping series to end', () => !isAlive(series), {
      timeoutMs: (SERIES_S + 10) * 1000,
      intervalMs: 200,
    })
    const out = fs.readFileSync(series.log, 'utf8')
    const {sent, received} = pingStats(out)
    const gap = longestGap(out, sent)
    console.log(
      `[e2e] relay ${victim.name} killed: ${a!.name} moved within ${moved} ms (netcheck polls included); ` +
        `series ${received}/${sent}, longest gap ${gap} pings (${gap * 100} ms)`,
    )
    // "Within seconds": at most 5 s without a reply (50 pings at 10/s).
    expect(gap).toBeLessThanOrEqual(50)
    expect(received).toBeGreaterThan(sent - 60)
  })
})
