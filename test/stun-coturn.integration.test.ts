// A third-party STUN client agrees with ours: coturn's turnutils_natdiscovery (RFC 5780 mapping and
// filtering discovery) against our StunServer on loopback must report what our Netcheck reports.
// Loopback has no NAT, so both must say endpoint-independent mapping and filtering. The namespace
// NAT lab runs the same comparison from behind each NAT kind (test/lab/nat-behaviour.root.test.ts).
import {execa} from 'execa'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {StunServer, type StunServerAddresses} from '../controller/stun/server.js'
import {Netcheck} from '../daemon/nat/netcheck.js'
import {nodeUdpBind} from '../shared/net/udp.js'
import {
  NATDISCOVERY_BIN,
  findNatdiscovery,
  natdiscoveryArgs,
  parseNatdiscovery,
} from './coturn-natdiscovery.js'

const bin = findNatdiscovery()
if (bin === undefined) {
  console.warn(
    `${NATDISCOVERY_BIN} not found: coturn cross-check skipped (apt-get install coturn; scripts/setup.sh does it)`,
  )
}

describe.skipIf(bin === undefined)('coturn turnutils_natdiscovery against our StunServer', () => {
  let server: StunServer
  let addresses: StunServerAddresses
  let secondAddress = true

  beforeAll(async () => {
    try {
      ;(await nodeUdpBind({address: '127.0.0.2', port: 0})).close()
    } catch {
      secondAddress = false
      return
    }
    server = new StunServer({
      primary: {address: '127.0.0.1', port: 0},
      alternate: {address: '127.0.0.2', port: 0},
    })
    addresses = await server.start()
  })
  afterAll(() => server?.close())

  it('reports the same mapping and filtering as our Netcheck (no NAT on loopback: endpoint-independent both)', async (ctx) => {
    // natdiscovery's mapping test needs a second server address; without 127.0.0.2 there is none.
    if (!secondAddress) return ctx.skip()
    const run = await execa(bin!, natdiscoveryArgs(addresses.primary, '127.0.0.1'), {
      timeout: 30_000,
      reject: false,
    })
    const out = `${run.stdout}\n${run.stderr}`
    const verdict = parseNatdiscovery(out)
    expect(verdict.mapping, out).toBeDefined()
    expect(verdict.filtering, out).toBeDefined()
    const theirs = {mapping: verdict.mapping, filtering: verdict.filtering, noNat: verdict.noNat}

    const ours = await new Netcheck({
      server: addresses.primary,
      bind: nodeUdpBind,
      bindAddress: '127.0.0.1',
    }).run()
    expect(theirs).toEqual({
      mapping: ours.mapping,
      filtering: ours.filtering,
      noNat: ours.behindNat === false,
    })
    expect(theirs).toEqual({mapping: 'endpoint-independent', filtering: 'endpoint-independent', noNat: true})
    // Every request coturn sent parsed and was answered; none needed an error response.
    expect(server.stats()).toMatchObject({
      errorResponses: 0,
      dropped: {malformed: 0, 'not-binding-request': 0},
    })
  })
})
