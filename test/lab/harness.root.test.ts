/**
 * The namespace lab's own plumbing, without controller or meshd: the bridged underlay, process
 * records, a static wireguard-go tunnel, and teardown that leaves nothing behind (processes,
 * namespaces, wireguard-go sockets, the run dir), also when done from the state file alone.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {Lab} from '../../cli/lib/lab/lab.js'
import {isAlive, procStartTime} from '../../cli/lib/lab/procs.js'
import {run, runOk, waitFor} from '../../cli/lib/lab/sh.js'
import {readState} from '../../cli/lib/lab/state.js'
import {staticPair} from '../../cli/lib/lab/static-wg.js'
import {namespaceExists} from '../../cli/lib/lab/topology.js'
import {labSkipReason} from './skip.js'

const skip = labSkipReason({needBuild: false})

describe.skipIf(skip !== undefined)(`namespace lab plumbing${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const labs: Lab[] = []
  afterAll(() => {
    for (const lab of labs) lab.teardownSync()
  })

  it('connects hosts over a bridged 198.51.100.0/24 underlay without touching the root namespace', async () => {
    const lab = await Lab.create({teardownOnExit: true})
    labs.push(lab)
    const a = await lab.addNode({daemon: false})
    const b = await lab.addNode({daemon: false})
    expect(a.underlay).toBe('198.51.100.11')
    expect(b.underlay).toBe('198.51.100.12')
    await waitFor('underlay ping a -> b', () => lab.ping(a, b.underlay), {timeoutMs: 5000})
    expect(await lab.ping(b, a.underlay)).toBe(true)
    const rootAddrs = await runOk('ip', ['-br', 'addr'])
    expect(rootAddrs).not.toContain('198.51.100.')
    const rootLinks = await runOk('ip', ['-br', 'link'])
    expect(rootLinks).not.toContain(lab.prefix)
    // The root namespace cannot reach the lab: it has no route there.
    expect((await run('ping', ['-c', '1', '-W', '1', a.underlay], {timeoutMs: 4000})).code).not.toBe(0)
    lab.teardownSync()
  })

  it('leaves the mode of an existing lab root (MESH_LAB_ROOT=/tmp, say) alone', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-labroot-'))
    fs.chmodSync(root, 0o1777)
    const saved = process.env.MESH_LAB_ROOT
    process.env.MESH_LAB_ROOT = root
    try {
      const lab = await Lab.create({teardownOnExit: true})
      labs.push(lab)
      expect(path.dirname(lab.runDir)).toBe(root)
      expect(fs.statSync(root).mode & 0o7777).toBe(0o1777)
      expect(fs.statSync(lab.runDir).mode & 0o777).toBe(0o711)
      lab.teardownSync()
    } finally {
      if (saved === undefined) delete process.env.MESH_LAB_ROOT
      else process.env.MESH_LAB_ROOT = saved
      fs.rmSync(root, {recursive: true, force: true})
    }
  })

  it('carries traffic over a static wireguard-go pair whose interface names carry the run prefix', async () => {
    const lab = await Lab.create({teardownOnExit: true})
    labs.push(lab)
    const a = await lab.addNode({daemon: false})
    const b = await lab.addNode({daemon: false})
    const pair = await staticPair(lab, a, b)
    for (const i of pair.ifaces) expect(i.startsWith(lab.prefix) && i.length <= 15).toBe(true)
    await waitFor('ping over the static tunnel', () => lab.ping(a, pair.addresses[1]), {timeoutMs: 10_000})
    const wg = await runOk('wg', ['show', pair.ifaces[0], 'latest-handshakes'], {ns: a.ns})
    expect(Number(wg.trim().split(/\s+/)[1])).toBeGreaterThan(0)
    lab.teardownSync()
  })

  it('tears down from the state file alone: recorded and daemonized processes, namespaces, sockets, run dir', async () => {
    const lab = await Lab.create({teardownOnExit: true})
    labs.push(lab)
    const a = await lab.addNode({daemon: false})
    const sleeper = lab.startHelper(a, 'sleep', ['sleep', '600'])
    // A daemonizing wireguard-go (not recorded by pid) only lives inside the lab's namespace.
    const iface = `${lab.prefix}x1`
    await runOk('wireguard-go', [iface], {ns: a.ns})
    const wgSock = `/var/run/wireguard/${iface}.sock`
    await waitFor('wireguard-go socket', () => fs.existsSync(wgSock), {timeoutMs: 5000})
    const wgPids = (await runOk('ip', ['netns', 'pids', a.ns])).split(/\s+/).filter(Boolean).map(Number)
    expect(wgPids.length).toBeGreaterThanOrEqual(2)
    expect(isAlive(sleeper)).toBe(true)

    // Another process (`mesh lab down` after a crash) knows only the prefix.
    const state = readState(lab.prefix)
    expect(state?.namespaces).toEqual([`${lab.prefix}-sw`, a.ns])
    const reopened = Lab.open(lab.prefix)!
    reopened.teardownSync()

    expect(isAlive(sleeper)).toBe(false)
    // Killed processes may linger a moment as zombies until their parent reaps them.
    await waitFor(
      'every process of the namespace to be gone',
      () => wgPids.every((pid) => !procStartTime(pid)),
      {
        timeoutMs: 2000,
      },
    )
    expect(namespaceExists(a.ns)).toBe(false)
    expect(namespaceExists(`${lab.prefix}-sw`)).toBe(false)
    expect(fs.existsSync(wgSock)).toBe(false)
    expect(fs.existsSync(lab.runDir)).toBe(false)
    // A second teardown is harmless.
    lab.teardownSync()
  })
})
