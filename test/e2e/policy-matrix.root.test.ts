/**
 * The ACL policy matrix end to end (issue 10) in one namespace lab: a real controller and four
 * real meshd nodes on wireguard-go — the admin's laptop (joined by invite, so owned by `admin`)
 * and three servers joined with tagged auth keys (tag:web, tag:db, tag:ci). Under POLICY:
 * allowed TCP and UDP ports pass, other ports are dropped by the receiving node's nftables,
 * pairs the policy does not connect are absent from each other's `wg show`, and a policy change
 * (a rule added, a rule removed, the policy removed) reaches the nodes' WireGuard and firewalls
 * within a second. Every wait is a bounded poll; a "dropped" connection is one with a 700 ms
 * bound, not a sleep. The lab is built once; teardown runs even when a test fails.
 */
import fs from 'node:fs'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import type {Lab} from '../../cli/lib/lab/lab.js'
import {run, waitFor} from '../../cli/lib/lab/sh.js'
import type {LabNode} from '../../cli/lib/lab/state.js'
import {useLab} from '../lab/e2e-helpers.js'
import {labSkipReason} from '../lab/skip.js'

const skip = labSkipReason({tools: ['nft']})
const NET = 'lab'

/**
 * admin (the laptop) reaches everything; tag:web reaches tag:db on tcp 5432 and udp 5353 only.
 * tag:ci is in no rule but the laptop's: it sees only the laptop. web and db see each other
 * (web may reach db), db may start nothing towards web.
 */
const POLICY = `{
  // the policy matrix of policy-matrix.root.test.ts
  "acls": [
    {"src": ["admin"], "dst": ["*:*"]},
    {"src": ["tag:web"], "dst": ["tag:db:5432"], "proto": "tcp"},
    {"src": ["tag:web"], "dst": ["tag:db:5353"], "proto": "udp"},
  ],
  "tests": [{"src": "tag:web", "accept": ["tag:db:5432"], "deny": ["tag:db:8080"]}],
}`
/** POLICY, and tag:ci may reach tag:db on tcp 5432: ci and db see each other from now on. */
const POLICY_CI = POLICY.replace(
  `"proto": "udp"},`,
  `"proto": "udp"},\n    {"src": ["tag:ci"], "dst": ["tag:db:5432"], "proto": "tcp"},`,
)
/** POLICY_CI without web's tcp 5432 to db (udp 5353 stays: web and db still see each other). */
const POLICY_CI_NO_WEB_TCP = POLICY_CI.replace(
  `{"src": ["tag:web"], "dst": ["tag:db:5432"], "proto": "tcp"},`,
  '',
).replace(`"accept": ["tag:db:5432"], "deny": ["tag:db:8080"]`, `"deny": ["tag:db:5432", "tag:db:8080"]`)

/**
 * `listen TCPPORTS UDPPORTS` (comma lists): serves "hi" on each TCP port and echoes UDP on each
 * UDP port, prints "ready" once all are bound. `tcp HOST PORT MS` / `udp HOST PORT MS`: one try
 * with a bound, prints connected / answered / timeout / an error code.
 */
const TOOL = `
import net from 'node:net'
import dgram from 'node:dgram'
const [mode, ...rest] = process.argv.slice(2)
if (mode === 'listen') {
  const tcp = rest[0].split(',').filter(Boolean), udp = rest[1].split(',').filter(Boolean)
  let pending = tcp.length + udp.length
  const up = () => { if (--pending === 0) console.log('ready') }
  for (const p of tcp) net.createServer((s) => s.end('hi')).listen(Number(p), '0.0.0.0', up)
  for (const p of udp) {
    const u = dgram.createSocket('udp4')
    u.on('message', (m, r) => u.send(m, r.port, r.address))
    u.bind(Number(p), up)
  }
} else {
  // Each answer carries when it happened (ms since the epoch): for a pass, when the reply came;
  // for a timeout, when the try was sent. The test's timings then leave out process start-up.
  const [host, port, ms] = rest
  let sentAt = Date.now()
  const t = setTimeout(() => { console.log('timeout ' + sentAt); process.exit(0) }, Number(ms))
  const done = (what) => { clearTimeout(t); console.log(what + ' ' + Date.now()); process.exit(0) }
  if (mode === 'tcp') {
    sentAt = Date.now()
    const s = net.connect({host, port: Number(port)})
    s.on('data', (d) => done(String(d) === 'hi' ? 'connected' : 'garbled'))
    s.on('error', (e) => done(e.code))
  } else {
    const u = dgram.createSocket('udp4')
    u.on('message', () => done('answered'))
    u.on('error', (e) => done(e.code))
    u.bind(0, () => { sentAt = Date.now(); u.send('probe', Number(port), host) })
  }
}
`
const TCP_PORTS = [5432, 8080]
const UDP_PORTS = [5353, 7000]
/** How long a try may take before it counts as dropped. */
const TRY_MS = 700

describe.skipIf(skip !== undefined)(
  `ACL policy matrix end to end${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let lab: Lab
    let tool: string
    const node: Record<'laptop' | 'web' | 'db' | 'ci', LabNode> = {} as never
    const iface = {} as Record<keyof typeof node, string>
    const key = {} as Record<keyof typeof node, string>
    const addr = (n: keyof typeof node): string => node[n].addresses[NET]!

    useLab({nodes: 1, network: NET, cidr: '10.242.0.0/24'}, async (l) => {
      lab = l
      tool = path.join(lab.runDir, 'policy-tool.mjs')
      fs.writeFileSync(tool, TOOL)
      node.laptop = lab.nodes[0]!
      const url = lab.state.controller!.url
      const servers = ['web', 'db', 'ci'] as const
      const added = await Promise.all(servers.map(() => lab.addNode()))
      for (const [i, name] of servers.entries()) {
        const n = (node[name] = added[i]!)
        const {key: authKey} = await lab
          .admin()
          .createAuthKey({network: NET}, {tags: [`tag:${name}`], preApproved: true})
        const r = await lab.mesh(n, [
          'up',
          '--auth-key',
          authKey,
          '--controller',
          url,
          '--name',
          name,
          '--json',
        ])
        expect(r.code, `${r.stderr}\n${lab.logTail(n)}`).toBe(0)
      }
      for (const name of Object.keys(node) as (keyof typeof node)[]) {
        const net = (await lab.status(node[name]))!.networks.find((x) => x.name === NET)!
        node[name].addresses[NET] = net.address
        node[name].nodeIds[NET] = net.nodeId
        iface[name] = net.interface
        key[name] = net.publicKey
      }
      // Listeners on db (the receiver of the port rules) and on web (to show db may start nothing).
      for (const name of ['db', 'web'] as const) {
        const p = lab.startHelper(node[name], 'listen', [
          process.execPath,
          tool,
          'listen',
          TCP_PORTS.join(','),
          UDP_PORTS.join(','),
        ])
        const log = lab.log(p.name)
        await waitFor(
          `${name}'s listeners`,
          () => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('ready'),
          {
            timeoutMs: 10_000,
            intervalMs: 25,
          },
        )
      }
      // Everyone sees everyone before a policy: every pair pings.
      await lab.waitAllPairsPing(NET, Object.values(node), 30_000)
    })

    const peersOf = async (n: keyof typeof node): Promise<string[]> =>
      (await lab.wgPeers(node[n], iface[n]))
        .map((k) => (Object.keys(key) as (keyof typeof node)[]).find((x) => key[x] === k) ?? k)
        .sort()

    /** One try from `from` to `to`'s port over the mesh: connected/answered, or timeout when dropped. */
    const reach = async (
      from: keyof typeof node,
      proto: 'tcp' | 'udp',
      to: keyof typeof node,
      port: number,
    ) => {
      return (await reachAt(from, proto, to, port)).result
    }
    /** reach(), with when the reply came (a pass) or the try was sent (a timeout). */
    const reachAt = async (
      from: keyof typeof node,
      proto: 'tcp' | 'udp',
      to: keyof typeof node,
      port: number,
    ): Promise<{result: string; at: number}> => {
      const r = await run(process.execPath, [tool, proto, addr(to), String(port), String(TRY_MS)], {
        ns: node[from].ns,
        timeoutMs: 10_000,
      })
      const [result = '', at = '0'] = r.stdout.trim().split(' ')
      return {result, at: Number(at)}
    }
    const PASS = {tcp: 'connected', udp: 'answered'} as const

    /** Sets (or removes, null) the policy; returns when the controller answered. */
    const setPolicy = async (document: string | null): Promise<number> => {
      if (document === null) await lab.admin().deletePolicy()
      else await lab.admin().setPolicy({document})
      return Date.now()
    }

    /**
     * Waits until `check` holds (true: now; a number: the moment it held, from the probe); returns
     * the ms since `since`, which must be within a second.
     */
    const within = async (
      what: string,
      since: number,
      check: () => Promise<boolean | number>,
    ): Promise<number> => {
      const held = await waitFor(what, check, {timeoutMs: 5000, intervalMs: 20})
      const ms = (held === true ? Date.now() : held) - since
      console.log(`[e2e] ${what}: ${ms} ms after the controller answered`)
      return ms
    }

    it('shows each node only the peers the policy lets it reach or be reached from', async () => {
      const at = await setPolicy(POLICY)
      const ms = await within('the policy reached every WireGuard', at, async () => {
        const [laptop, web, db, ci] = await Promise.all(
          ['laptop', 'web', 'db', 'ci'].map((n) => peersOf(n as never)),
        )
        return (
          JSON.stringify([laptop, web, db, ci]) ===
          JSON.stringify([['ci', 'db', 'web'], ['db', 'laptop'], ['laptop', 'web'], ['laptop']])
        )
      })
      expect(ms).toBeLessThanOrEqual(1000)
      // ci and db, ci and web: no tunnel, so not even a ping.
      expect(await lab.ping(node.ci, addr('db'))).toBe(false)
      expect(await lab.ping(node.web, addr('ci'))).toBe(false)
      expect(await lab.ping(node.ci, addr('laptop'))).toBe(false) // ci may not start anything
      expect(await lab.ping(node.laptop, addr('ci'))).toBe(true)
    })

    it('passes the allowed ports (TCP and UDP) and drops the others on the receiving node', async () => {
      await waitFor(
        'web -> db tcp 5432 under the policy',
        async () => (await reach('web', 'tcp', 'db', 5432)) === PASS.tcp,
        {
          timeoutMs: 5000,
          intervalMs: 20,
        },
      )
      const matrix = {
        'web tcp db:5432': await reach('web', 'tcp', 'db', 5432),
        'web udp db:5353': await reach('web', 'udp', 'db', 5353),
        'web tcp db:8080': await reach('web', 'tcp', 'db', 8080),
        'web udp db:7000': await reach('web', 'udp', 'db', 7000),
        'db tcp web:5432': await reach('db', 'tcp', 'web', 5432),
        'db udp web:5353': await reach('db', 'udp', 'web', 5353),
        'laptop tcp db:8080': await reach('laptop', 'tcp', 'db', 8080),
        'laptop udp db:7000': await reach('laptop', 'udp', 'db', 7000),
        'ci tcp db:5432': await reach('ci', 'tcp', 'db', 5432),
      }
      expect(matrix).toEqual({
        'web tcp db:5432': PASS.tcp,
        'web udp db:5353': PASS.udp,
        'web tcp db:8080': 'timeout',
        'web udp db:7000': 'timeout',
        'db tcp web:5432': 'timeout',
        'db udp web:5353': 'timeout',
        'laptop tcp db:8080': PASS.tcp,
        'laptop udp db:7000': PASS.udp,
        // No peer at all: the kernel has no route through WireGuard that answers.
        'ci tcp db:5432': expect.not.stringMatching(/^connected$/),
      })
    })

    it('brings a new pair and its port in within a second of a rule added, and takes a port out when its rule goes', async () => {
      let at = await setPolicy(POLICY_CI)
      const peerMs = await within('ci and db to see each other', at, async () => {
        const [ci, db] = await Promise.all([peersOf('ci'), peersOf('db')])
        return ci.includes('db') && db.includes('ci')
      })
      const portMs = await within('ci -> db tcp 5432 to pass', at, async () => {
        const r = await reachAt('ci', 'tcp', 'db', 5432)
        return r.result === PASS.tcp && r.at
      })
      expect(peerMs).toBeLessThanOrEqual(1000)
      expect(portMs).toBeLessThanOrEqual(1000)
      expect(await reach('ci', 'tcp', 'db', 8080)).toBe('timeout')

      at = await setPolicy(POLICY_CI_NO_WEB_TCP)
      const stopMs = await within('web -> db tcp 5432 to be dropped', at, async () => {
        const r = await reachAt('web', 'tcp', 'db', 5432)
        return r.result === 'timeout' && r.at
      })
      expect(stopMs).toBeLessThanOrEqual(1000)
      expect(await reach('web', 'udp', 'db', 5353)).toBe(PASS.udp)
      expect(await peersOf('web')).toEqual(['db', 'laptop'])
    })

    it('takes a pair out of WireGuard within a second when the policy stops connecting it, and gives everything back when it is removed', async () => {
      // ci loses db again (back to POLICY): the peer disappears on both sides.
      let at = await setPolicy(POLICY)
      const goneMs = await within('ci and db to lose each other', at, async () => {
        const [ci, db] = await Promise.all([peersOf('ci'), peersOf('db')])
        return !ci.includes('db') && !db.includes('ci')
      })
      expect(goneMs).toBeLessThanOrEqual(1000)

      at = await setPolicy(null)
      const allMs = await within('every node to see every other again', at, async () => {
        const all = await Promise.all((['laptop', 'web', 'db', 'ci'] as const).map(peersOf))
        return all.every((p) => p.length === 3)
      })
      expect(allMs).toBeLessThanOrEqual(1000)
      // No policy: no firewall table, every port of every node open again.
      await waitFor(
        'db tcp web:8080 without a policy',
        async () => (await reach('db', 'tcp', 'web', 8080)) === PASS.tcp,
        {
          timeoutMs: 5000,
          intervalMs: 20,
        },
      )
      expect(await reach('ci', 'udp', 'db', 7000)).toBe(PASS.udp)
      const tables = await run('nft', ['list', 'tables'], {ns: node.db.ns, timeoutMs: 5000})
      expect(tables.stdout).not.toMatch(/mesh_/)
    })
  },
)
