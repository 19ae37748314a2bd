/**
 * `mesh lab exec`, `status` and `down` as built commands against a lab of bare hosts, including
 * cleaning up after a lab whose creator was SIGKILLed half-way (no exit handler ran).
 */
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {Lab, meshJs, projectRoot} from '../../cli/lib/lab/lab.js'
import {isAlive} from '../../cli/lib/lab/procs.js'
import {run, waitFor} from '../../cli/lib/lab/sh.js'
import {readState} from '../../cli/lib/lab/state.js'
import {namespaceExists} from '../../cli/lib/lab/topology.js'
import type {LabSummary} from '../../cli/lib/lab/up.js'
import {labSkipReason} from './skip.js'

const skip = labSkipReason()
const mesh = (args: string[]) => run(process.execPath, [meshJs(), ...args], {timeoutMs: 30_000})

describe.skipIf(skip !== undefined)(`mesh lab commands${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const labs: Lab[] = []
  afterAll(() => {
    for (const lab of labs) lab.teardownSync()
  })

  it('up --json builds a mesh whose nodes ping each other through exec, and down removes all of it', async () => {
    const up = await run(process.execPath, [meshJs(), 'lab', 'up', '--nodes', '2', '--json'], {
      timeoutMs: 120_000,
    })
    expect(up.code, up.stderr).toBe(0)
    const summary = JSON.parse(up.stdout) as LabSummary
    const lab = Lab.open(summary.prefix)!
    labs.push(lab)
    expect(summary.nodes.map((n) => n.name)).toEqual(['node1', 'node2'])
    expect(summary.adminCli).toBe(true)
    const ping = await mesh([
      'lab',
      'exec',
      '--lab',
      summary.prefix,
      'node1',
      '--',
      'ping',
      '-c1',
      '-W2',
      summary.nodes[1]!.address,
    ])
    expect(ping.code, ping.stdout + ping.stderr).toBe(0)
    const status = await mesh([
      'lab',
      'exec',
      '--lab',
      summary.prefix,
      'node2',
      '--',
      'mesh',
      'status',
      '--json',
    ])
    expect(JSON.parse(status.stdout)).toMatchObject({
      networks: [{name: 'lab', address: summary.nodes[1]!.address}],
    })
    const nodes = await mesh([
      'lab',
      'exec',
      '--lab',
      summary.prefix,
      'node1',
      '--',
      'mesh',
      'node',
      'list',
      '-n',
      'lab',
      '--json',
    ])
    expect(nodes.code, nodes.stderr).toBe(0)
    expect(nodes.stdout).toContain(summary.nodes[0]!.address)

    const down = await mesh(['lab', 'down', '--lab', summary.prefix])
    expect(down.code).toBe(0)
    for (const ns of lab.state.namespaces) expect(namespaceExists(ns)).toBe(false)
    for (const p of lab.state.procs) expect(isAlive(p)).toBe(false)
    expect(fs.readdirSync('/var/run/wireguard').filter((f) => f.startsWith(summary.prefix))).toEqual([])
    expect(fs.existsSync(summary.runDir)).toBe(false)
  })

  it('exec runs the command in the node namespace with MESH_SOCKET and mesh on PATH, passing its exit code', async () => {
    const lab = await Lab.create({teardownOnExit: true})
    labs.push(lab)
    const a = await lab.addNode({daemon: false})
    const r = await mesh([
      'lab',
      'exec',
      '--lab',
      lab.prefix,
      'node1',
      '--',
      'sh',
      '-c',
      'echo "$MESH_SOCKET"; ip -br addr show eth0; mesh --version; exit 3',
    ])
    expect(r.code).toBe(3)
    expect(r.stdout).toContain(a.socket)
    expect(r.stdout).toContain('198.51.100.11/24')
    expect(r.stdout).toMatch(/^mesh\/\d/m)
    const missing = await mesh(['lab', 'exec', '--lab', lab.prefix, 'node9', '--', 'true'])
    expect(missing.code).toBe(66)
    expect(missing.stderr).toContain('no node node9')
  })

  it('status --json lists the lab, its namespaces and processes', async () => {
    const lab = await Lab.create({teardownOnExit: true})
    labs.push(lab)
    const a = await lab.addNode({daemon: false})
    lab.startHelper(a, 'sleep', ['sleep', '600'])
    const r = await mesh(['lab', 'status', '--lab', lab.prefix, '--json'])
    expect(r.code).toBe(0)
    const st = JSON.parse(r.stdout) as {
      labs: Array<{
        prefix: string
        nodes: Array<{namespace: string; namespaceExists: boolean}>
        processes: Array<{name: string; running: boolean}>
      }>
    }
    expect(st.labs).toHaveLength(1)
    expect(st.labs[0]!.prefix).toBe(lab.prefix)
    expect(st.labs[0]!.nodes).toEqual([expect.objectContaining({namespace: a.ns, namespaceExists: true})])
    expect(st.labs[0]!.processes).toEqual([expect.objectContaining({name: 'node1/sleep', running: true})])
  })

  it('down removes a lab whose creator was killed half-way, from its state file', async () => {
    // A creator that builds part of a lab, reports its prefix, and is then SIGKILLed.
    const script = `
      import {Lab} from ${JSON.stringify(path.join(projectRoot(), 'dist/cli/lib/lab/lab.js'))}
      const lab = await Lab.create()
      const n = await lab.addNode({daemon: false})
      lab.startHelper(n, 'sleep', ['sleep', '600'])
      process.stdout.write(lab.prefix + '\\n')
      setInterval(() => {}, 1000)
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const prefix = await waitFor(
      'the creator to report its prefix',
      () => out.match(/^(ml[0-9a-f]{4})$/m)?.[1],
      {
        timeoutMs: 20_000,
      },
    )
    const state = readState(prefix)!
    child.kill('SIGKILL')
    await new Promise((r) => child.once('exit', r))
    const sleeper = state.procs.find((p) => p.name === 'node1/sleep')!
    expect(isAlive(sleeper)).toBe(true)

    const r = await mesh(['lab', 'down', '--lab', prefix, '--json'])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({
      removed: [expect.objectContaining({prefix, namespaces: 2, processes: 1})],
    })
    expect(isAlive(sleeper)).toBe(false)
    for (const ns of state.namespaces) expect(namespaceExists(ns)).toBe(false)
    expect(fs.existsSync(state.runDir)).toBe(false)
    const again = await mesh(['lab', 'down', '--lab', prefix])
    expect(again.code).toBe(66)
  })

  it('up --nat refuses an unknown kind and a --nodes that disagrees with the kinds, before building anything', async () => {
    const before = fs.existsSync('/run/mesh-lab') ? fs.readdirSync('/run/mesh-lab').length : 0
    const bogus = await mesh(['lab', 'up', '--nat', 'cone,fullcone'])
    expect(bogus.code).toBe(64)
    expect(bogus.stderr).toContain('unknown NAT kind "fullcone"')
    const count = await mesh(['lab', 'up', '--nat', 'none,cone', '--nodes', '3'])
    expect(count.code).toBe(64)
    expect(count.stderr).toContain('--nat names 2 kind(s) but --nodes is 3')
    expect(fs.existsSync('/run/mesh-lab') ? fs.readdirSync('/run/mesh-lab').length : 0).toBe(before)
  })

  it('down removes a NAT lab whose creator was killed: routers, LANs, the stranger and their nft tables', async () => {
    const script = `
      import {Lab} from ${JSON.stringify(path.join(projectRoot(), 'dist/cli/lib/lab/lab.js'))}
      const lab = await Lab.create()
      await lab.addNode({daemon: false, nat: 'cone'})
      await lab.addNode({daemon: false, nat: 'none'})
      await lab.stranger()
      process.stdout.write(lab.prefix + '\\n')
      setInterval(() => {}, 1000)
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const prefix = await waitFor(
      'the creator to report its prefix',
      () => out.match(/^(ml[0-9a-f]{4})$/m)?.[1],
      {
        timeoutMs: 20_000,
      },
    )
    child.kill('SIGKILL')
    await new Promise((r) => child.once('exit', r))
    const state = readState(prefix)!
    expect(state.namespaces).toEqual([
      `${prefix}-sw`,
      `${prefix}-r1`,
      `${prefix}-n1`,
      `${prefix}-n2`,
      `${prefix}-x`,
    ])
    expect(state.nodes.map((n) => [n.nat, n.router?.ns])).toEqual([
      ['cone', `${prefix}-r1`],
      ['none', undefined],
    ])
    const table = await run('nft', ['list', 'table', 'ip', 'natlab'], {ns: `${prefix}-r1`})
    expect(table.stdout).toContain('cone_udp')

    const r = await mesh(['lab', 'down', '--lab', prefix, '--json'])
    expect(r.code).toBe(0)
    for (const ns of state.namespaces) expect(namespaceExists(ns)).toBe(false)
    expect(fs.existsSync(state.runDir)).toBe(false)
  })
})
