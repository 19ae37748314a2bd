/**
 * Relay <-> direct switches end to end, on one pair that can go direct (cone with restricted):
 * - a direct path that breaks (all UDP between the two public addresses dropped at one router,
 *   as when a NAT mapping dies) is back on the relay within 5 s, with traffic flowing;
 * - a relayed pair whose direct path opens up (the rule lifted) moves to direct within 30 s,
 *   and a ping running all along at 5 per second loses fewer than 2 % of its packets;
 * - an iperf3 TCP stream running across an upgrade keeps running (no reset, exit 0).
 * The path is read from meshd and, for direct, from the router's counters of UDP to the peer.
 */
import {describe, expect, it} from 'vitest'
import type {Lab} from '../../cli/lib/lab/lab.js'
import {blockUdp, packetsOf, publicAddress, routerCounters, unblockUdp} from '../../cli/lib/lab/nat.js'
import {have, run, waitFor} from '../../cli/lib/lab/sh.js'
import type {LabNode} from '../../cli/lib/lab/state.js'
import {dechunk, httpRequest, longestGap, pingStats, rawRequest, useLab} from '../lab/e2e-helpers.js'
import {StatusSchema} from '../../shared/protocol/local-api.js'
import {PROTOCOL_HEADER, PROTOCOL_VERSION} from '../../shared/protocol/version.js'
import {labSkipReason} from '../lab/skip.js'

const skip = labSkipReason({tools: ['nft', 'sysctl', 'iperf3']})
const NET = 'up'

describe.skipIf(skip !== undefined || !have('iperf3'))(
  `relay and direct switches${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let lab: Lab
    useLab({nat: ['cone', 'restricted'], network: NET, cidr: '10.246.0.0/24'}, async (l) => {
      lab = l
    })
    const a = (): LabNode => lab.nodes.find((n) => n.nat === 'cone')!
    const b = (): LabNode => lab.nodes.find((n) => n.nat === 'restricted')!

    /** What `from`'s meshd shows for `to`, asked on its socket directly (a CLI run costs ~0.5 s). */
    const pathOf = async (from: LabNode, to: LabNode) => {
      const reply = await rawRequest(
        from.socket,
        httpRequest('GET', '/v1/status', undefined, {[PROTOCOL_HEADER]: String(PROTOCOL_VERSION)}),
      )
      const st = StatusSchema.parse(JSON.parse(dechunk(reply)))
      return st.networks.find((n) => n.name === NET)?.peers.find((p) => p.name === to.name)
    }

    /** Both sides on `want` (both asked at once, every 100 ms); resolves with the time it took. */
    async function bothOn(want: 'direct' | 'relay', timeoutMs: number): Promise<number> {
      const t0 = Date.now()
      const on = async (x: LabNode, y: LabNode): Promise<boolean> => {
        const p = await pathOf(x, y)
        return p?.path === want && (want === 'direct') !== /^127\./.test(p.endpoint ?? '127.')
      }
      await waitFor(
        `both to see each other ${want}`,
        async () => (await Promise.all([on(a(), b()), on(b(), a())])).every(Boolean),
        {timeoutMs, intervalMs: 100},
      )
      return Date.now() - t0
    }

    /** `ping` from a to b at 5 per second, `count` packets; the command's output. */
    const pingRun = (count: number) =>
      run('ping', ['-n', '-i', '0.2', '-W', '2', '-c', String(count), b().addresses[NET]!], {
        ns: a().ns,
        timeoutMs: count * 200 + 15_000,
      })

    it('goes direct after the nodes come up', async () => {
      await bothOn('direct', 40_000)
    })

    it('falls back to the relay within 5 s when the direct path breaks under traffic', async () => {
      const ping = pingRun(60)
      const t0 = Date.now()
      await blockUdp(lab, a(), b())
      await bothOn('relay', 15_000)
      const total = Date.now() - t0
      const out = await ping
      const st = pingStats(out.stdout)
      const outageMs = longestGap(out.stdout, 60) * 200
      console.log(
        `[upgrade] direct -> relay in ${total} ms (both meshd asked at once); ping ${st.received}/${st.sent}, longest outage ${outageMs} ms`,
      )
      expect(total).toBeLessThanOrEqual(5_000)
      expect(outageMs).toBeLessThanOrEqual(5_000)
      // And the relay carries the traffic.
      expect(await lab.ping(a(), b().addresses[NET]!, 2)).toBe(true)
    })

    it('moves a relayed pair to direct within 30 s of the path opening, losing < 2 % of a 5/s ping', async () => {
      // Confirm the relay first: it holds while the direct path is blocked.
      await bothOn('relay', 5_000)
      const before = packetsOf((await routerCounters(lab, a())).udpOutTo, publicAddress(b()))
      const ping = pingRun(200) // 40 s
      const t0 = Date.now()
      await unblockUdp(lab, a(), b())
      await bothOn('direct', 30_000)
      const upgradedMs = Date.now() - t0
      const out = await ping
      const st = pingStats(out.stdout)
      const loss = (st.sent - st.received) / Math.max(1, st.sent)
      console.log(
        `[upgrade] relay -> direct ${upgradedMs} ms after the path opened; ping ${st.received}/${st.sent} (${(loss * 100).toFixed(1)} % lost)`,
      )
      expect(upgradedMs).toBeLessThanOrEqual(30_000)
      expect(st.sent).toBeGreaterThanOrEqual(190)
      expect(loss).toBeLessThan(0.02)
      const after = packetsOf((await routerCounters(lab, a())).udpOutTo, publicAddress(b()))
      expect(after, "UDP from a to b at a's router after the upgrade").toBeGreaterThan(before)
    })

    it('keeps an iperf3 TCP stream running across an upgrade', async () => {
      await blockUdp(lab, a(), b())
      await bothOn('relay', 15_000)
      lab.startHelper(b(), 'iperf3', ['iperf3', '-s', '-1', '-B', b().addresses[NET]!])
      try {
        await waitFor(
          'iperf3 server',
          async () => (await run('ss', ['-ltn'], {ns: b().ns})).stdout.includes(':5201'),
          {timeoutMs: 10_000, intervalMs: 100},
        )
        const client = run('iperf3', ['-c', b().addresses[NET]!, '-t', '15', '-J'], {
          ns: a().ns,
          timeoutMs: 60_000,
        })
        await waitFor(
          'the stream to start',
          async () => ((await pathOf(a(), b()))?.txBytes ?? 0) > 1_000_000,
          {
            timeoutMs: 10_000,
            intervalMs: 100,
          },
        )
        await unblockUdp(lab, a(), b())
        const upMs = await bothOn('direct', 30_000)
        const res = await client
        expect(res.code, res.stderr + res.stdout.slice(-500)).toBe(0)
        const report = JSON.parse(res.stdout) as {
          error?: string
          end: {sum_received: {bytes: number; bits_per_second: number}}
        }
        expect(report.error).toBeUndefined()
        expect(report.end.sum_received.bytes).toBeGreaterThan(0)
        console.log(
          `[upgrade] iperf3 across the upgrade (direct after ${upMs} ms): ${(report.end.sum_received.bits_per_second / 1e6).toFixed(0)} Mbit/s, exit 0`,
        )
      } finally {
        await lab.stopHelper(b(), 'iperf3')
      }
    })
  },
)
