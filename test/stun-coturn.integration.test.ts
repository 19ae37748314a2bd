// A third-party STUN client agrees with ours: coturn's turnutils_natdiscovery (RFC 5780 mapping and
// filtering discovery) against our StunServer on loopback must report what our Netcheck reports.
// Loopback has no NAT, so both must say endpoint-independent mapping and filtering. The namespace
// NAT lab will run the same comparison from behind each NAT kind.
import {execa} from 'execa'
import {accessSync, constants} from 'node:fs'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {StunServer, type StunServerAddresses} from '../controller/stun/server.js'
import {Netcheck} from '../daemon/nat/netcheck.js'
import type {FilteringBehaviour, MappingBehaviour} from '../shared/nat/net-report.js'
import {nodeUdpBind} from '../shared/net/udp.js'

const BIN = 'turnutils_natdiscovery'

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not in this directory
    }
  }
  return undefined
}

const bin = findOnPath(BIN)
if (bin === undefined) {
  console.warn(
    `${BIN} not found: coturn cross-check skipped (apt-get install coturn; scripts/setup.sh does it)`,
  )
}

/** coturn's wording → RFC 4787 names as in NetReport. */
const BEHAVIOUR: Record<string, MappingBehaviour & FilteringBehaviour> = {
  'Endpoint Independent': 'endpoint-independent',
  'Address Dependent': 'address-dependent',
  'Address and Port Dependent': 'address-and-port-dependent',
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
    const run = await execa(
      bin!,
      ['-m', '-f', '-L', '127.0.0.1', '-p', String(addresses.primary.port), '127.0.0.1'],
      {
        timeout: 30_000,
        reject: false,
      },
    )
    const out = `${run.stdout}\n${run.stderr}`
    const mapping = /NAT with (.+?) Mapping!/.exec(out)?.[1]
    const filtering = /NAT with (.+?) Filtering!/.exec(out)?.[1]
    expect(mapping, out).toBeDefined()
    expect(filtering, out).toBeDefined()
    const theirs = {
      mapping: BEHAVIOUR[mapping!],
      filtering: BEHAVIOUR[filtering!],
      noNat: /No NAT!/.test(out),
    }

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
