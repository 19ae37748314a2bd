/**
 * `mesh rotate-key` in a namespace lab (issue 10): two real meshd nodes on wireguard-go ping each
 * other while one of them replaces its WireGuard key pair; the pings lose at most a handshake's
 * worth (a gap of at most 2 pings 200 ms apart), the peer's WireGuard lists the new public key
 * and not the old one, and the address stays.
 */
import {describe, expect, it} from 'vitest'
import type {Lab} from '../../cli/lib/lab/lab.js'
import {run} from '../../cli/lib/lab/sh.js'
import type {LabNode} from '../../cli/lib/lab/state.js'
import {RotateKeyResultSchema} from '../../shared/protocol/local-api.js'
import {longestGap, pingStats, useLab} from '../lab/e2e-helpers.js'
import {labSkipReason} from '../lab/skip.js'

const skip = labSkipReason()
const NET = 'lab'
const COUNT = 40

describe.skipIf(skip !== undefined)(`mesh rotate-key end to end${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let lab: Lab
  useLab({nodes: 2, network: NET, cidr: '10.243.0.0/24'}, (l) => {
    lab = l
  })

  it('keeps a ping across a key rotation, losing at most a handshake, with the address kept', async () => {
    const [a, b] = lab.nodes as [LabNode, LabNode]
    await lab.waitAllPairsPing(NET, [a, b], 5000)
    const before = (await lab.status(b))!.networks.find((n) => n.name === NET)!
    // 40 pings, 0.2 s apart (8 s); the rotation runs about 1 s in.
    const pings = run('ping', ['-n', '-i', '0.2', '-c', String(COUNT), '-W', '1', b.addresses[NET]!], {
      ns: a.ns,
      timeoutMs: 30_000,
    })
    await new Promise((r) => setTimeout(r, 1000))
    const t0 = Date.now()
    const rotated = await lab.mesh(b, ['rotate-key', NET, '--json'], {timeoutMs: 20_000})
    expect(rotated.code, rotated.stderr).toBe(0)
    const res = RotateKeyResultSchema.parse(JSON.parse(rotated.stdout))
    console.log(`[e2e] rotate-key answered in ${Date.now() - t0} ms`)
    expect(res.rotated[0]).toMatchObject({network: NET, previousPublicKey: before.publicKey})
    const fresh = res.rotated[0]!.publicKey
    expect(fresh).not.toBe(before.publicKey)

    const r = await pings
    const {sent, received} = pingStats(r.stdout)
    const gap = longestGap(r.stdout, COUNT)
    console.log(`[e2e] rotate-key: ${received}/${sent} pings answered, longest gap ${gap}`)
    expect(sent).toBe(COUNT)
    expect(gap).toBeLessThanOrEqual(2)

    const peers = await lab.wgPeers(a, await lab.interfaceOf(a, NET))
    expect(peers).toContain(fresh)
    expect(peers).not.toContain(before.publicKey)
    const after = (await lab.status(b))!.networks.find((n) => n.name === NET)!
    expect(after).toMatchObject({publicKey: fresh, address: before.address})
  })
})
