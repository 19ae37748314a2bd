// Netcheck against the real StunServer on real loopback sockets: no NAT, so endpoint-independent
// mapping and filtering, the local port kept, and direct connections with every peer.
import {afterEach, expect, it} from 'vitest'
import {StunServer} from '../../controller/stun/server.js'
import {NetReportSchema} from '../../shared/nat/net-report.js'
import {nodeUdpBind} from '../../shared/net/udp.js'
import {Netcheck} from './netcheck.js'

const servers: StunServer[] = []
afterEach(() => servers.splice(0).forEach((s) => s.close()))

async function loopback2(): Promise<boolean> {
  try {
    ;(await nodeUdpBind({address: '127.0.0.2', port: 0})).close()
    return true
  } catch {
    return false
  }
}

it('on loopback (no NAT) reports UDP, its own endpoint, endpoint-independent mapping and filtering, direct with all', async () => {
  const hasSecondAddress = await loopback2()
  if (!hasSecondAddress) console.warn('127.0.0.2 cannot be bound here: testing with an alternate port only')
  const server = new StunServer({
    primary: {address: '127.0.0.1', port: 0},
    alternate: hasSecondAddress ? {address: '127.0.0.2', port: 0} : {port: 0},
  })
  servers.push(server)
  const {primary, other} = await server.start()
  const report = await new Netcheck({server: primary, bind: nodeUdpBind, bindAddress: '127.0.0.1'}).run()
  expect(NetReportSchema.parse(report)).toEqual(report)
  expect(report).toMatchObject({
    udp: true,
    behindNat: false,
    publicEndpoint: report.localEndpoint,
    portPreserved: true,
    mapping: 'endpoint-independent',
    otherAddress: other,
    direct: 'all',
  })
  // With a second address all four RFC 5780 sockets exist and filtering is known too.
  if (hasSecondAddress) expect(report.filtering).toBe('endpoint-independent')
  // Nothing waited for a timeout: every answer came at once.
  expect(report.durationMs).toBeLessThan(2000)
  expect(server.stats()).toMatchObject({errorResponses: 0, dropped: {malformed: 0, 'rate-limited': 0}})
})

it('reports "UDP blocked: relay only" when nothing answers, within its time bound', async () => {
  // A bound socket that never answers stands in for a STUN server behind a firewall.
  const silent = await nodeUdpBind({address: '127.0.0.1', port: 0})
  try {
    const report = await new Netcheck({
      server: silent.local,
      bind: nodeUdpBind,
      bindAddress: '127.0.0.1',
      rtoMs: 20,
      transactionTimeoutMs: 300,
    }).run()
    expect(report).toMatchObject({udp: false, direct: 'relay-only', verdict: 'UDP blocked: relay only'})
    expect(report.durationMs).toBeGreaterThanOrEqual(300)
    expect(report.durationMs).toBeLessThan(2000)
  } finally {
    silent.close()
  }
})
