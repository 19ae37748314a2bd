import {describe, expect, it} from 'vitest'
import {absentNft, Firewall, FirewallError, type NftRunner} from './firewall.js'
import type {RulesetInput} from './ruleset.js'

/** An nft that records each script it gets and answers with `answer`. */
function recordingNft(
  answer: () => {exitCode: number; stderr: string; missing?: boolean} = () => ({exitCode: 0, stderr: ''}),
) {
  const scripts: string[] = []
  const run: NftRunner = (args, opts) => {
    expect(args).toEqual(['-f', '-'])
    scripts.push(opts.input)
    return Promise.resolve(answer())
  }
  return {run, scripts}
}

const input = (inbound?: RulesetInput['peers'][number]['inbound']): RulesetInput => ({
  iface: 'mesh0',
  cidr: '10.7.0.0/24',
  self: '10.7.0.1',
  peers: [{address: '10.7.0.2', inbound}],
})

describe('Firewall', () => {
  it('runs nft only when the script for the interface changed', async () => {
    const nft = recordingNft()
    const fw = new Firewall({run: nft.run})
    expect((await fw.apply(input([{proto: 'icmp'}]))).changed).toBe(true)
    expect((await fw.apply(input([{proto: 'icmp'}]))).changed).toBe(false)
    expect((await fw.apply(input([{proto: 'tcp', ports: [[22, 22]]}]))).changed).toBe(true)
    expect(nft.scripts).toHaveLength(2)
    expect(nft.scripts[1]).toContain('10.7.0.2 . 22,')
  })

  it("runs nft again after a failure, even for the same script, and carries nft's message", async () => {
    let fail = true
    const nft = recordingNft(() =>
      fail ? {exitCode: 1, stderr: 'Error: Could not process rule: No such file'} : {exitCode: 0, stderr: ''},
    )
    const fw = new Firewall({run: nft.run})
    const err = await fw.apply(input([{proto: 'icmp'}])).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(FirewallError)
    expect((err as FirewallError).message).toBe('nft: Error: Could not process rule: No such file')
    fail = false
    expect((await fw.apply(input([{proto: 'icmp'}]))).changed).toBe(true)
    expect(nft.scripts).toHaveLength(2)
  })

  it('without nft does nothing when there is no policy, and fails as missing when there is one', async () => {
    const fw = new Firewall({run: absentNft})
    expect((await fw.apply(input(undefined))).ruleset.policy).toBe(false)
    await fw.remove('mesh0')
    const err = await fw.apply(input([])).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(FirewallError)
    expect((err as FirewallError).missing).toBe(true)
  })

  it('with no policy reports a failing nft as a warning, once, and not as an error', async () => {
    const nft = recordingNft(() => ({
      exitCode: 1,
      stderr: 'Error: Could not process rule: Operation not supported',
    }))
    const fw = new Firewall({run: nft.run})
    const res = await fw.apply(input(undefined))
    expect(res.warning).toBe('nft: Error: Could not process rule: Operation not supported')
    expect((await fw.apply(input(undefined))).warning).toBeUndefined()
    expect(nft.scripts).toHaveLength(1)
    await expect(fw.apply(input([]))).rejects.toThrow('Operation not supported')
  })

  it('removes the table once, and applies again after a removal', async () => {
    const nft = recordingNft()
    const fw = new Firewall({run: nft.run})
    await fw.apply(input([]))
    await fw.remove('mesh0')
    await fw.remove('mesh0')
    expect(nft.scripts.slice(1)).toEqual(['table inet mesh_mesh0\ndelete table inet mesh_mesh0\n'])
    await fw.apply(input([]))
    expect(nft.scripts).toHaveLength(3)
  })

  it('treats a policy removed as the table removed', async () => {
    const nft = recordingNft()
    const fw = new Firewall({run: nft.run})
    await fw.apply(input([]))
    expect((await fw.apply(input(undefined))).changed).toBe(true)
    await fw.remove('mesh0') // already gone: nothing to run
    expect(nft.scripts).toHaveLength(2)
  })

  it('keeps interfaces apart', async () => {
    const nft = recordingNft()
    const fw = new Firewall({run: nft.run})
    await fw.apply(input([]))
    await fw.apply({...input([]), iface: 'mesh1'})
    expect(nft.scripts.map((s) => s.split('\n')[0])).toEqual([
      'table inet mesh_mesh0',
      'table inet mesh_mesh1',
    ])
  })
})
