import {readFileSync} from 'node:fs'
import {describe, expect, it} from 'vitest'
import {diffInterface} from './diff.js'
import type {InterfaceConfig, InterfaceState} from './driver.js'
import {
  parseDump,
  planApply,
  wgSetArgs,
  WgToolsDriver,
  type CommandRunner,
  type RunResult,
} from './wg-tools.js'

const key = (n: number): string => Buffer.alloc(32, n).toString('base64')

describe('parseDump', () => {
  it('reads the interface line and every peer line of `wg show IF dump`', () => {
    const text = [
      `${key(1)}\t${key(2)}\t51820\toff`,
      `${key(3)}\t(none)\t198.51.100.3:41870\t10.99.0.2/32\t1795319700\t1234\t5678\t25`,
      `${key(4)}\t(none)\t(none)\t10.99.0.3/32,10.5.0.0/16\t0\t0\t0\toff`,
      '',
    ].join('\n')
    expect(parseDump(text)).toEqual({
      privateKey: key(1),
      publicKey: key(2),
      listenPort: 51820,
      peers: [
        {
          publicKey: key(3),
          endpoint: '198.51.100.3:41870',
          allowedIps: ['10.99.0.2/32'],
          lastHandshakeMs: 1795319700000,
          rxBytes: 1234,
          txBytes: 5678,
          persistentKeepalive: 25,
        },
        {
          publicKey: key(4),
          allowedIps: ['10.99.0.3/32', '10.5.0.0/16'],
          lastHandshakeMs: 0,
          rxBytes: 0,
          txBytes: 0,
        },
      ],
    })
  })

  it('returns undefined for output that is not a dump', () => {
    expect(parseDump('')).toBeUndefined()
    expect(parseDump('interface: wg0')).toBeUndefined()
  })
})

describe('planApply and wgSetArgs', () => {
  const desired: InterfaceConfig = {
    name: 'mesh0',
    privateKey: key(9),
    listenPort: 40000,
    address: '10.0.0.1/24',
    mtu: 1420,
    peers: [
      {publicKey: key(5), allowedIps: ['10.0.0.5/32'], endpoint: '203.0.113.5:1', persistentKeepalive: 25},
    ],
  }

  it('sets key and port of a new interface in one transaction, then its peers', () => {
    const plan = planApply(desired, diffInterface(undefined, desired))
    expect(plan).toEqual({
      settings: {listenPort: 40000, privateKey: key(9)},
      peers: [
        {publicKey: key(5), allowedIps: ['10.0.0.5/32'], endpoint: '203.0.113.5:1', persistentKeepalive: 25},
      ],
    })
  })

  it('hands wg the private key only as a file path', () => {
    const args = wgSetArgs('mesh0', {listenPort: 40000, privateKey: key(9)}, '/tmp/k/key')
    expect(args).toEqual(['set', 'mesh0', 'listen-port', '40000', 'private-key', '/tmp/k/key'])
    expect(() => wgSetArgs('mesh0', {privateKey: key(9)})).toThrow(/file/)
  })

  it('writes every field of an added peer, keepalive 0 when it has none', () => {
    const peer = {publicKey: key(5), allowedIps: ['10.0.0.5/32', '10.5.0.0/16']}
    expect(
      wgSetArgs('mesh0', {
        peers: planApply({...desired, peers: [peer]}, diffInterface(undefined, {...desired, peers: [peer]}))
          .peers,
      }),
    ).toEqual([
      'set',
      'mesh0',
      'peer',
      key(5),
      'allowed-ips',
      '10.0.0.5/32,10.5.0.0/16',
      'persistent-keepalive',
      '0',
    ])
  })

  it('removes peers that are no longer wanted in a transaction of their own', () => {
    const current = {
      name: 'mesh0',
      publicKey: key(10),
      privateKey: key(9),
      listenPort: 40000,
      addresses: ['10.0.0.1/24'],
      mtu: 1420,
      up: true,
      peers: [{publicKey: key(6), allowedIps: ['10.0.0.6/32'], lastHandshakeMs: 0, rxBytes: 0, txBytes: 0}],
    }
    const plan = planApply(desired, diffInterface(current, desired))
    expect(plan.remove).toEqual({peers: [{publicKey: key(6), remove: true}]})
    expect(wgSetArgs('mesh0', plan.remove!)).toEqual(['set', 'mesh0', 'peer', key(6), 'remove'])
    expect(plan.settings).toBeUndefined()
    expect(plan.peers.map((p) => p.publicKey)).toEqual([key(5)])
  })
})

/**
 * `ip` and `wg` in memory, enough for WgToolsDriver: like the real wg, a `wg set` that names a
 * refused peer changes nothing at all and exits 1.
 */
class FakeTools {
  readonly calls: string[][] = []
  readonly refuse = new Set<string>()
  /** When set, every wg command fails (wireguard-go died). */
  dead = false
  link: {state: InterfaceState} | undefined

  readonly runner: CommandRunner = async (cmd, args) => {
    this.calls.push([cmd, ...args])
    const ok = (stdout = ''): RunResult => ({exitCode: 0, stdout, stderr: ''})
    const fail = (stderr: string): RunResult => ({exitCode: 1, stdout: '', stderr})
    const a = args.join(' ')
    if (cmd === 'ip') {
      if (a.startsWith('link add')) {
        this.link = {
          state: {
            name: 'mesh0',
            publicKey: '',
            privateKey: '',
            listenPort: 0,
            addresses: [],
            mtu: 1420,
            up: false,
            peers: [],
          },
        }
        return ok()
      }
      if (!this.link) return fail('Device "mesh0" does not exist.')
      const st = this.link.state
      if (a.startsWith('-j addr show'))
        return ok(
          JSON.stringify([
            {
              ifname: 'mesh0',
              mtu: st.mtu,
              flags: st.up ? ['UP'] : [],
              addr_info: st.addresses.map((x) => ({
                family: 'inet',
                local: x.split('/')[0],
                prefixlen: Number(x.split('/')[1]),
              })),
            },
          ]),
        )
      if (a.startsWith('link show')) return ok()
      if (a.startsWith('addr add')) this.link.state = {...st, addresses: [...st.addresses, args[2]!]}
      if (a.startsWith('link set')) this.link.state = {...st, up: true}
      return ok()
    }
    if (this.dead || !this.link) return fail('Unable to access interface: No such device')
    const st = this.link.state
    if (args[0] === 'show' && args[2] === 'dump') {
      const lines = [`${st.privateKey || '(none)'}\t${st.publicKey || '(none)'}\t${st.listenPort}\toff`]
      for (const p of st.peers)
        lines.push(
          [
            p.publicKey,
            '(none)',
            p.endpoint ?? '(none)',
            p.allowedIps.join(',') || '(none)',
            0,
            0,
            0,
            'off',
          ].join('\t'),
        )
      return ok(lines.join('\n'))
    }
    if (args[0] === 'show') return ok(st.publicKey)
    // wg set IF …: parse it all first, apply only when every peer is acceptable.
    const peers = new Map(st.peers.map((p) => [p.publicKey, {...p}]))
    let next = {...st}
    let cur: string | undefined
    for (let i = 2; i < args.length; i++) {
      const w = args[i]!
      if (w === 'listen-port') next = {...next, listenPort: Number(args[++i])}
      else if (w === 'private-key') next = {...next, privateKey: readFileSync(args[++i]!, 'utf8').trim()}
      else if (w === 'peer') {
        cur = args[++i]!
        if (this.refuse.has(cur)) return fail(`Name or service not known: \`999.999.999.999:1'`)
        if (!peers.has(cur))
          peers.set(cur, {publicKey: cur, allowedIps: [], lastHandshakeMs: 0, rxBytes: 0, txBytes: 0})
      } else if (w === 'remove') peers.delete(cur!)
      else if (w === 'allowed-ips') peers.get(cur!)!.allowedIps = args[++i]!.split(',')
      else if (w === 'endpoint') peers.get(cur!)!.endpoint = args[++i]!
      else if (w === 'persistent-keepalive') i++
    }
    this.link.state = {...next, peers: [...peers.values()]}
    return ok()
  }
}

class TestDriver extends WgToolsDriver {
  readonly kind = 'kernel' as const
  protected async createLink(name: string): Promise<void> {
    await this.run('ip', ['link', 'add', 'dev', name, 'type', 'wireguard'])
  }
  async remove(): Promise<void> {}
  async close(): Promise<void> {}
}

describe('WgToolsDriver.apply', () => {
  const peer = (n: number) => ({
    publicKey: key(n),
    allowedIps: [`10.0.0.${n}/32`],
    endpoint: `203.0.113.${n}:51820`,
    persistentKeepalive: 25,
  })
  const config = (...ns: number[]): InterfaceConfig => ({
    name: 'mesh0',
    privateKey: key(9),
    listenPort: 40000,
    address: '10.0.0.1/24',
    mtu: 1420,
    peers: ns.map(peer),
  })
  const wgSets = (t: FakeTools) => t.calls.filter((c) => c[0] === 'wg' && c[1] === 'set')
  const onLink = (t: FakeTools) => t.link!.state.peers.map((p) => p.publicKey).sort()

  it('configures an interface that create() made ahead, without making it again', async () => {
    const t = new FakeTools()
    const driver = new TestDriver(t.runner)
    expect(await driver.create('mesh0')).toBe(true)
    // Made, and nothing else: no key, port, address or peer, and down.
    expect(t.link!.state).toMatchObject({privateKey: '', listenPort: 0, addresses: [], up: false, peers: []})
    expect(await driver.create('mesh0')).toBe(false)
    const res = await driver.apply(config(2))
    expect(res).toMatchObject({changed: true, created: false, added: 1})
    expect(t.calls.filter((c) => c.join(' ').startsWith('ip link add'))).toHaveLength(1)
    expect(t.link!.state).toMatchObject({listenPort: 40000, addresses: ['10.0.0.1/24'], up: true})
  })

  it('applies every other peer when wg refuses one, and returns the refused one', async () => {
    const t = new FakeTools()
    const driver = new TestDriver(t.runner)
    expect((await driver.apply(config(2, 3))).failed).toEqual([])
    t.refuse.add(key(4))
    t.calls.length = 0
    // Peer 2 removed, 4 (refused) and 5 added, 3 changed.
    const res = await driver.apply({
      ...config(3, 4, 5),
      peers: [{...peer(3), allowedIps: ['10.0.0.33/32']}, peer(4), peer(5)],
    })
    expect(onLink(t)).toEqual([key(3), key(5)].sort())
    expect(t.link!.state.peers.find((p) => p.publicKey === key(3))?.allowedIps).toEqual(['10.0.0.33/32'])
    expect(res).toMatchObject({changed: true, added: 1, updated: 1, removed: 1})
    expect(res.failed).toEqual([
      {publicKey: key(4), error: expect.stringContaining('Name or service not known')},
    ])
    // Removal alone first; then all peers at once (refused); then one call per peer.
    const sets = wgSets(t)
    expect(sets[0]).toEqual(['wg', 'set', 'mesh0', 'peer', key(2), 'remove'])
    expect(sets.slice(1).map((c) => c.filter((w) => w === 'peer').length)).toEqual([3, 1, 1, 1])
  })

  it('removes peers even when every added peer is refused', async () => {
    const t = new FakeTools()
    const driver = new TestDriver(t.runner)
    await driver.apply(config(2))
    t.refuse.add(key(4))
    const res = await driver.apply(config(4))
    expect(onLink(t)).toEqual([])
    expect(res.failed?.map((f) => f.publicKey)).toEqual([key(4)])
    expect(res.removed).toBe(1)
  })

  it('tries a refused peer again on the next apply and takes it once wg does', async () => {
    const t = new FakeTools()
    const driver = new TestDriver(t.runner)
    t.refuse.add(key(4))
    expect((await driver.apply(config(3, 4))).failed?.map((f) => f.publicKey)).toEqual([key(4)])
    t.refuse.clear()
    const res = await driver.apply(config(3, 4))
    expect(res).toMatchObject({added: 1, failed: []})
    expect(onLink(t)).toEqual([key(3), key(4)].sort())
  })

  it('fails the whole apply when the interface itself stops answering, without a call per peer', async () => {
    const t = new FakeTools()
    const driver = new TestDriver(t.runner)
    await driver.apply(config())
    t.calls.length = 0
    // The interface is read fine (apply reads with readNow), then wireguard-go dies before the
    // peers are set.
    const d = driver as unknown as {readNow(name: string): Promise<InterfaceState | undefined>}
    const read = d.readNow.bind(driver)
    d.readNow = async (name: string) => {
      const st = await read(name)
      t.dead = true
      return st
    }
    await expect(driver.apply(config(2, 3, 4))).rejects.toMatchObject({code: 'WIREGUARD_FAILED'})
    expect(wgSets(t)).toHaveLength(1)
  })
})
