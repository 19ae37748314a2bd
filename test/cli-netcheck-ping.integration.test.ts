// `mesh netcheck` and `mesh ping` as the built CLI runs them against a meshd on loopback (the
// in-memory WireGuard driver, a stand-in controller, a real StunServer, an echo responder):
// the --json shapes are the protocol types, the human lines, and the documented exit codes.
import fs from 'node:fs'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {z} from 'zod'
import {StunServer} from '../controller/stun/server.js'
import {startPingLab, type PingLab} from '../daemon/testing/ping-lab.js'
import {tempDir} from '../daemon/testing/harness.js'
import {NetcheckResultSchema, PingResultSchema} from '../shared/protocol/local-api.js'
import {json, mesh, wireCode} from './cli-runner.js'

describe('mesh netcheck and mesh ping (built CLI)', () => {
  let lab: PingLab
  let stun: StunServer
  let configDir: string
  const run = (args: string[]) => mesh([...args, '--socket', lab.socketPath], {configDir})

  beforeAll(async () => {
    configDir = tempDir('mesh-cli-')
    stun = new StunServer({primary: {address: '127.0.0.1', port: 0}, alternate: {port: 0}})
    const {primary} = await stun.start()
    lab = await startPingLab({nat: {stun: {primary: {port: primary.port}}, relays: [{region: 'home'}]}})
  })
  afterAll(async () => {
    await lab?.close()
    stun?.close()
    fs.rmSync(configDir, {recursive: true, force: true})
  })

  it('netcheck --json prints the NetReport with the network and its relays', async () => {
    const r = json(NetcheckResultSchema, await run(['netcheck', '--json']))
    expect(r).toMatchObject({
      network: 'lab',
      udp: true,
      publicEndpoint: {address: '127.0.0.1'},
      mapping: 'endpoint-independent',
      relays: [{region: 'home', reachable: true}],
    })
    expect(r.verdict.length).toBeGreaterThan(0)
  })

  it('netcheck prints UDP, public address, mapping, filtering, port, relay and the verdict for people', async () => {
    const res = await run(['netcheck', '--network', 'lab'])
    expect(res.code, res.stderr).toBe(0)
    for (const label of ['UDP:', 'public address:', 'mapping:', 'filtering:', 'port preserved:', 'relay:'])
      expect(res.stdout).toContain(label)
    expect(res.stdout).toMatch(/relay: +home: reachable, [\d.]+ ms/)
    expect(res.stdout).toMatch(/verdict: +direct connections work/)
  })

  it('ping prints one pong line per reply with the endpoint and exits 0; --json is the attempt array', async () => {
    const human = await run(['ping', 'beta', '--count', '2'])
    expect(human.code, human.stderr).toBe(0)
    const lines = human.stdout.trim().split('\n')
    expect(lines).toHaveLength(2)
    for (const l of lines)
      // The netmap names a relay, so the peer is relayed first (relay first, then upgrades).
      expect(l).toMatch(
        /^pong from beta \(127\.0\.0\.2\) via (relay|198\.51\.100\.5:51820)( \(\w+\))? in [\d.]+ ms$/,
      )
    const attempts = json(PingResultSchema, await run(['ping', '127.0.0.2', '--count', '1', '--json']))
    expect(attempts).toEqual([
      expect.objectContaining({seq: 1, peer: 'beta', address: '127.0.0.2', rttMs: expect.any(Number)}),
    ])
  })

  it('ping exits 1 when no reply came, and prints the attempts anyway', async () => {
    const human = await run(['ping', 'gamma', '--count', '1', '--timeout', '200'])
    expect(human.code).toBe(1)
    expect(human.stdout.trim()).toBe('no reply from gamma (127.0.0.3) within 200 ms')
    const j = await run(['ping', 'gamma', '--count', '1', '--timeout', '200', '--json'])
    expect(j.code).toBe(1)
    expect(z.array(z.object({rttMs: z.null()})).parse(JSON.parse(j.stdout))).toHaveLength(1)
  })

  it('exits with the documented codes: 66 PEER_NOT_FOUND, 66 NETWORK_NOT_JOINED, 69 DAEMON_UNREACHABLE', async () => {
    const unknown = await run(['ping', 'nobody', '--json'])
    expect([unknown.code, wireCode(unknown)]).toEqual([66, 'PEER_NOT_FOUND'])
    const noNet = await run(['netcheck', '--network', 'other', '--json'])
    expect([noNet.code, wireCode(noNet)]).toEqual([66, 'NETWORK_NOT_JOINED'])
    const gone = await mesh(['netcheck', '--json', '--socket', path.join(configDir, 'no.sock')], {configDir})
    expect([gone.code, wireCode(gone)]).toEqual([69, 'DAEMON_UNREACHABLE'])
  })
})
