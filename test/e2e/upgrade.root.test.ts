/**
 * Relay <-> direct switches end to end, on one pair that can go direct (cone with restricted):
 * - a direct path that breaks (all UDP between the two public addresses dropped at one router,
 *   as when a NAT mapping dies) is back on the relay within 5 s, with traffic flowing;
 * - a relayed pair whose direct path opens up (the rule lifted) moves to direct within 30 s,
 *   and a ping running all along at 5 per second loses fewer than 2 % of its packets;
 * - a relayed iperf3 TCP stream is not stalled by upgrade attempts that fail (direct blocked):
 *   no 0.5 s interval falls below a quarter of the median;
 * - an iperf3 TCP stream running across an upgrade keeps running (no reset, exit 0).
 * The path is read from meshd and, for direct, from the router's counters of UDP to the peer.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {describe, expect, it} from 'vitest'
import type {Lab} from '../../cli/lib/lab/lab.js'
import {blockUdp, packetsOf, publicAddress, routerCounters, unblockUdp} from '../../cli/lib/lab/nat.js'
import {have, run, waitFor} from '../../cli/lib/lab/sh.js'
import type {LabNode} from '../../cli/lib/lab/state.js'
import {dechunk, httpRequest, longestGap, pingStats, rawRequest, useLab} from '../lab/e2e-helpers.js'
import {StatusSchema} from '../../shared/protocol/local-api.js'
import {PROTOCOL_HEADER, PROTOCOL_VERSION} from '../../shared/protocol/version.js'
import {labSkipReason} from '../lab/skip.js'

/** A process inside a namespace, its output collected (ended by pid in the test's finally). */
const spawnIn = (ns: string, argv: string[]): ChildProcess => {
  const p = spawn('ip', ['netns', 'exec', ns, ...argv], {stdio: ['ignore', 'pipe', 'pipe']})
  const chunks: string[] = []
  outputs.set(p, chunks)
  p.stdout!.on('data', (d: Buffer) => chunks.push(d.toString()))
  p.stderr!.on('data', (d: Buffer) => chunks.push(d.toString()))
  return p
}
const outputs = new WeakMap<ChildProcess, string[]>()
const outputOf = (p: ChildProcess): string => (outputs.get(p) ?? []).join('')

/** Resolves when the process has printed a match of `re`; rejects when it exits first or after `ms`. */
const untilOutput = (p: ChildProcess, re: RegExp, ms: number): Promise<void> =>
  new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer)
      p.stdout!.off('data', check)
      p.off('exit', exited)
      if (err) reject(err)
      else resolve()
    }
    const check = (): void => {
      if (re.test(outputOf(p))) done()
    }
    const exited = (): void => done(new Error(`exited before printing ${re}: ${outputOf(p).slice(-400)}`))
    const timer = setTimeout(
      () => done(new Error(`no ${re} within ${ms} ms: ${outputOf(p).slice(-400)}`)),
      ms,
    )
    p.stdout!.on('data', check)
    p.once('exit', exited)
    check()
  })

/** The receiver's 0.5 s intervals of an iperf3 run (its output), in Mbit/s, summary lines left out. */
const intervalsOf = (out: string): {start: number; end: number; mbits: number}[] =>
  [
    ...out.matchAll(
      /\[\s*\d+\]\s+([\d.]+)-([\d.]+)\s+sec\s+[\d.]+ [KMG]?Bytes\s+([\d.]+) ([KMG]?)bits\/sec(?![^\n]*(?:sender|receiver))/g,
    ),
  ].map((m) => ({
    start: Number(m[1]),
    end: Number(m[2]),
    mbits: Number(m[3]) * ({'': 1e-6, K: 1e-3, M: 1, G: 1e3} as Record<string, number>)[m[4]!]!,
  }))

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((x, y) => x - y)
  return s[Math.floor(s.length / 2)] ?? 0
}

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

    it('keeps a relayed iperf3 stream flowing while upgrade attempts fail: no 0.5 s interval below a quarter of the median', async () => {
      // From direct (whatever ran before), then UDP between the pair dropped: the pair falls back
      // to the relay, and the leader attempts upgrades (after reupgradeMs, then with backoff)
      // that must fail, each switching one side away from the relay for its window.
      await unblockUdp(lab, a(), b())
      await bothOn('direct', 40_000)
      await blockUdp(lab, a(), b())
      await bothOn('relay', 15_000)
      const attemptsBefore = (await pathOf(a(), b()))?.upgradeAttempts ?? 0
      const server = spawnIn(b().ns, [
        'iperf3',
        '-s',
        '-1',
        '--forceflush',
        '-i',
        '0.5',
        '-B',
        b().addresses[NET]!,
      ])
      let client: ChildProcess | undefined
      try {
        await untilOutput(server, /Server listening/, 10_000)
        client = spawnIn(a().ns, [
          'iperf3',
          '-c',
          b().addresses[NET]!,
          '-t',
          '14',
          '-i',
          '0.5',
          '--forceflush',
        ])
        const code = await new Promise<number | null>((resolve) => client!.once('exit', (c) => resolve(c)))
        const out = outputOf(client)
        expect(code, out.slice(-800)).toBe(0)
        // The server prints its last lines just after the client exits.
        await untilOutput(server, /receiver/, 5_000)
        const attempts = ((await pathOf(a(), b()))?.upgradeAttempts ?? 0) - attemptsBefore
        // Slow start and the last, partial interval left out.
        const iv = intervalsOf(outputOf(server)).filter((i) => i.start >= 1 && i.end - i.start >= 0.45)
        const mbits = iv.map((i) => i.mbits)
        const med = median(mbits)
        const worst = Math.min(...mbits)
        const retr = /sec\s+(\d+)\s+sender/.exec(out)?.[1]
        console.log(
          `[upgrade] relayed iperf3 with ${attempts} failed upgrade attempts: worst 0.5 s ${worst.toFixed(1)} Mbit/s, median ${med.toFixed(1)} (${iv.length} intervals), ${retr ?? '?'} retransmits; ${mbits.map((m) => m.toFixed(0)).join(' ')}`,
        )
        expect(iv.length, outputOf(server).slice(-800)).toBeGreaterThanOrEqual(20)
        // The attempts happened (and failed: the pair is still relayed).
        expect(attempts).toBeGreaterThanOrEqual(2)
        expect((await pathOf(a(), b()))?.path).not.toBe('direct')
        // Main (before the fix): 6, 20 and 24 % of the median in three runs; with it 42-65 % in
        // four (load average 5-7 on 2 shared cores); a relayed stream alone dips to ~55 %.
        expect(worst).toBeGreaterThanOrEqual(med / 4)
      } finally {
        for (const p of [client, server]) if (p?.exitCode === null) p.kill('SIGKILL')
      }
    })

    it('keeps an iperf3 TCP stream running across an upgrade', async () => {
      await blockUdp(lab, a(), b())
      await bothOn('relay', 15_000)
      const server = spawnIn(b().ns, ['iperf3', '-s', '-1', '--forceflush', '-B', b().addresses[NET]!])
      let client: ChildProcess | undefined
      try {
        await untilOutput(server, /Server listening/, 10_000)
        client = spawnIn(a().ns, ['iperf3', '-c', b().addresses[NET]!, '-t', '15', '-i', '1', '--forceflush'])
        const exited = new Promise<number | null>((resolve) => client!.once('exit', (code) => resolve(code)))
        // The first one-second report: the stream runs, through the relay.
        await untilOutput(client, /sec\s+[\d.]+ [KMG]?Bytes/, 10_000)
        await unblockUdp(lab, a(), b())
        const upMs = await bothOn('direct', 30_000)
        const code = await exited
        const out = outputOf(client)
        expect(code, out.slice(-800)).toBe(0)
        expect(out).not.toMatch(/iperf3: error/)
        const receiver = /([\d.]+) ([KMG]?)bits\/sec\s+receiver/.exec(out)
        expect(receiver, out.slice(-800)).not.toBeNull()
        console.log(
          `[upgrade] iperf3 across the upgrade (direct after ${upMs} ms): ${receiver![1]} ${receiver![2]}bit/s, exit 0`,
        )
      } finally {
        for (const p of [client, server]) if (p?.exitCode === null) p.kill('SIGKILL')
      }
    })
  },
)
