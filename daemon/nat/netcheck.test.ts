// Netcheck against the real StunServer on the in-memory NAT lab, one NAT kind per case, on a fake
// clock: every verdict is proven without sockets or sleeping.
import {afterEach, describe, expect, it} from 'vitest'
import {StunServer} from '../../controller/stun/server.js'
import {NetReportSchema, type NetReport} from '../../shared/nat/net-report.js'
import type {UdpEndpoint} from '../../shared/net/udp.js'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {bindingRequest, decodeMessage, encodeMessage, type StunAttribute} from '../../shared/stun/codec.js'
import {Netcheck, type NetcheckOptions} from './netcheck.js'
import {NAT_KINDS, NatLab, type Host, type NatConfig} from './testing/natlab.js'

const PRIMARY = {address: '203.0.113.1', port: 3478}
const closers: (() => void)[] = []
afterEach(() => closers.splice(0).forEach((c) => c()))

interface World {
  clock: FakeClock
  lab: NatLab
  stunHost: Host
}

function world(): World {
  const clock = new FakeClock()
  const lab = new NatLab({clock})
  return {clock, lab, stunHost: lab.publicHost('203.0.113.1', '203.0.113.2')}
}

async function startStun(
  w: World,
  alternate: {address?: string; port?: number} | null = {address: '203.0.113.2', port: 3479},
) {
  const server = new StunServer({
    primary: PRIMARY,
    alternate: alternate ?? undefined,
    bind: w.stunHost.bind,
    clock: w.clock,
  })
  await server.start()
  closers.push(() => server.close())
  return server
}

/** Runs a netcheck from `host` to completion on the fake clock; the report must match its schema. */
async function netcheck(w: World, host: Host, opts: Partial<NetcheckOptions> = {}): Promise<NetReport> {
  const run = new Netcheck({
    server: PRIMARY,
    bind: host.bind,
    clock: w.clock,
    localAddresses: () => host.ips,
    ...opts,
  }).run()
  await w.clock.advanceAsync(20_000)
  const report = await run
  expect(NetReportSchema.parse(report)).toEqual(report)
  return report
}

async function behind(config: NatConfig, opts: Partial<NetcheckOptions> = {}) {
  const w = world()
  await startStun(w)
  const host = w.lab.nat('198.51.100.10', config).host('10.0.0.2')
  return {w, report: await netcheck(w, host, opts)}
}

describe('Netcheck on the NAT lab', () => {
  it('a public host without NAT: endpoint-independent both ways, own port, direct with every peer', async () => {
    const w = world()
    await startStun(w)
    const r = await netcheck(w, w.lab.publicHost('198.51.100.7'))
    expect(r).toMatchObject({
      udp: true,
      behindNat: false,
      publicEndpoint: {address: '198.51.100.7', port: r.localEndpoint!.port},
      mapping: 'endpoint-independent',
      filtering: 'endpoint-independent',
      portPreserved: true,
      otherAddress: {address: '203.0.113.2', port: 3479},
      direct: 'all',
      verdict: 'direct connections work with every peer that can send UDP',
      latencyMs: 0,
    })
  })

  it.each([
    {
      kind: 'cone',
      config: NAT_KINDS.cone,
      mapping: 'endpoint-independent',
      filtering: 'endpoint-independent',
      portPreserved: true,
      direct: 'all',
    },
    {
      kind: 'address-restricted',
      config: NAT_KINDS['address-restricted'],
      mapping: 'endpoint-independent',
      filtering: 'address-dependent',
      portPreserved: true,
      direct: 'all',
    },
    {
      kind: 'port-restricted (Linux masquerade)',
      config: NAT_KINDS['port-restricted'],
      mapping: 'endpoint-independent',
      filtering: 'address-and-port-dependent',
      portPreserved: true,
      direct: 'most',
    },
    {
      kind: 'symmetric',
      config: NAT_KINDS.symmetric,
      mapping: 'address-and-port-dependent',
      filtering: 'address-and-port-dependent',
      portPreserved: false,
      direct: 'limited',
    },
    {
      kind: 'address-dependent-mapping',
      config: {mapping: 'address-dependent', filtering: 'address-dependent'} as const,
      mapping: 'address-dependent',
      filtering: 'address-dependent',
      portPreserved: true,
      direct: 'limited',
    },
  ] as const)(
    'behind a $kind NAT: mapping $mapping, filtering $filtering, port kept $portPreserved, direct with $direct peers',
    async ({config, mapping, filtering, portPreserved, direct}) => {
      const {report} = await behind(config)
      expect(report).toMatchObject({udp: true, behindNat: true, mapping, filtering, portPreserved, direct})
      expect(report.publicEndpoint?.address).toBe('198.51.100.10')
    },
  )

  it('says "direct connections work with most peers" behind Linux masquerade and "otherwise relay" behind symmetric NAT', async () => {
    expect((await behind(NAT_KINDS['port-restricted'])).report.verdict).toMatch(
      /^direct connections work with most peers/,
    )
    expect((await behind(NAT_KINDS.symmetric)).report.verdict).toBe(
      'direct only with peers that have no NAT or a cone NAT; otherwise relay',
    )
  })

  it('with UDP blocked reports "UDP blocked: relay only" after one transaction timeout, not more', async () => {
    const {report, w} = await behind(NAT_KINDS['udp-blocked'], {
      rtoMs: 100,
      maxSends: 3,
      transactionTimeoutMs: 1000,
    })
    expect(report).toMatchObject({
      udp: false,
      publicEndpoint: null,
      direct: 'relay-only',
      verdict: 'UDP blocked: relay only',
    })
    expect(report.durationMs).toBe(1000)
    expect(w.lab.stats.dropped['udp-blocked']).toBe(3) // sent at 0, 100 and 300 ms
  })

  it('retransmits: an answer to the third send still counts, its RTT taken from that send', async () => {
    const w = world()
    const server = await startStun(w)
    let toPrimary = 0
    w.lab.dropIf = (p) => p.to.port === PRIMARY.port && p.to.address === PRIMARY.address && ++toPrimary <= 2
    const r = await netcheck(w, w.lab.nat('198.51.100.10', NAT_KINDS.cone).host('10.0.0.2'))
    expect(r).toMatchObject({udp: true, mapping: 'endpoint-independent', latencyMs: 0})
    expect(w.lab.stats.dropped['test-rule']).toBe(2)
    expect(server.stats().dropped['rate-limited']).toBe(0)
  })

  it('stops at totalTimeoutMs with what it learned, the unfinished tests unknown', async () => {
    const w = world()
    await startStun(w)
    // The alternate address never answers: mapping test II and filtering test II hang.
    w.lab.dropIf = (p) => p.from.address === '203.0.113.2'
    const r = await netcheck(w, w.lab.publicHost('198.51.100.7'), {
      transactionTimeoutMs: 5000,
      totalTimeoutMs: 1500,
    })
    expect(r).toMatchObject({udp: true, mapping: 'unknown', filtering: 'unknown', direct: 'most'})
    expect(r.durationMs).toBe(1500)
  })

  it('against a server without an alternate: UDP and the public endpoint, behaviour unknown', async () => {
    const w = world()
    await startStun(w, null)
    const r = await netcheck(w, w.lab.nat('198.51.100.10', NAT_KINDS.symmetric).host('10.0.0.2'))
    expect(r).toMatchObject({
      udp: true,
      otherAddress: null,
      mapping: 'unknown',
      filtering: 'unknown',
      direct: 'unknown',
    })
    expect(r.verdict).toMatch(/NAT behaviour unknown/)
  })

  it('against a server with an alternate port only: tells endpoint-independent from port-dependent mapping', async () => {
    for (const [config, mapping, filtering] of [
      [NAT_KINDS.cone, 'endpoint-independent', 'unknown'],
      [NAT_KINDS.symmetric, 'address-and-port-dependent', 'address-and-port-dependent'],
    ] as const) {
      const w = world()
      await startStun(w, {port: 3479})
      const r = await netcheck(w, w.lab.nat('198.51.100.10', config).host('10.0.0.2'))
      expect(r, config.mapping).toMatchObject({
        otherAddress: {address: '203.0.113.1', port: 3479},
        mapping,
        filtering,
      })
    }
  })

  it('a server that ignores CHANGE-REQUEST does not pass for a cone NAT: filtering unknown', async () => {
    const w = world()
    // A STUN server that always answers from the socket that received the request.
    const other = {address: '203.0.113.2', port: 3479}
    for (const at of [
      PRIMARY,
      other,
      {address: '203.0.113.2', port: 3478},
      {address: '203.0.113.1', port: 3479},
    ]) {
      const sock = await w.stunHost.bind(at)
      closers.push(() => sock.close())
      sock.onMessage((data, from: UdpEndpoint) => {
        const req = decodeMessage(data)
        const attributes: StunAttribute[] = [
          {kind: 'xor-mapped-address', address: {family: 4, ...from}},
          {kind: 'other-address', address: {family: 4, ...other}},
        ]
        sock.send(encodeMessage({...req, cls: 'success', attributes}), from)
      })
    }
    const r = await netcheck(w, w.lab.nat('198.51.100.10', NAT_KINDS['port-restricted']).host('10.0.0.2'))
    expect(r).toMatchObject({udp: true, mapping: 'endpoint-independent', filtering: 'unknown'})
  })

  it('ignores garbage and answers to transactions it never started', async () => {
    const w = world()
    const sock = await w.stunHost.bind(PRIMARY)
    closers.push(() => sock.close())
    sock.onMessage((data, from) => {
      const req = decodeMessage(data)
      sock.send(Buffer.from('garbage'), from)
      const forged = {...bindingRequest(Buffer.alloc(12, 1)), cls: 'success' as const}
      sock.send(
        encodeMessage({
          ...forged,
          attributes: [{kind: 'xor-mapped-address', address: {family: 4, address: '198.51.100.66', port: 1}}],
        }),
        from,
      )
      sock.send(
        encodeMessage({
          ...req,
          cls: 'success',
          attributes: [{kind: 'xor-mapped-address', address: {family: 4, ...from}}],
        }),
        from,
      )
    })
    const host = w.lab.publicHost('198.51.100.7')
    const r = await netcheck(w, host)
    expect(r.publicEndpoint).toEqual({address: '198.51.100.7', port: r.localEndpoint!.port})
  })
})
