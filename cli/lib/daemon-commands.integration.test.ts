// The node commands as users run them: the built `mesh` binary against meshd (in-process, with
// the in-memory WireGuard driver) and a real controller. Needs `npm run build` first.
import fs from 'node:fs'
import path from 'node:path'
import {execa} from 'execa'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../../controller/testing/test-controller.js'
import {startFakeDaemon, tempDir, type FakeDaemon} from '../../daemon/testing/harness.js'
import {StatusSchema} from '../../shared/protocol/local-api.js'

const meshJs = path.resolve(import.meta.dirname, '../../bin/mesh.js')
const built = fs.existsSync(path.resolve(import.meta.dirname, '../../dist/cli/commands/join.js'))

async function mesh(socket: string, args: string[], env: Record<string, string> = {}) {
  const r = await execa(process.execPath, [meshJs, ...args], {
    reject: false,
    env: {MESH_SOCKET: socket, NO_COLOR: '1', ...env},
    timeout: 60_000,
  })
  return {code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr)}
}

describe.skipIf(!built)('mesh join/up/down/leave/status/ip', () => {
  let ctl: TestController
  let d: FakeDaemon
  const ctlDir = tempDir('mesh-ctl-')
  let joinString = ''

  beforeAll(async () => {
    ctl = await startTestController({dataDir: ctlDir})
    const call = async (p: string, body: unknown) => {
      const res = await fetch(`${ctl.url}${p}`, {
        method: 'POST',
        headers: {authorization: `Bearer ${ctl.adminToken}`, 'content-type': 'application/json'},
        body: JSON.stringify(body),
      })
      if (!res.ok) throw new Error(`${p}: ${res.status} ${await res.text()}`)
      return res.json() as Promise<Record<string, unknown>>
    }
    await call('/api/v1/networks', {name: 'cli', cidr: '10.66.0.0/24'})
    joinString = String((await call('/api/v1/networks/cli/invites', {})).joinString)
    d = await startFakeDaemon()
  })
  afterAll(async () => {
    await d?.stop()
    await ctl?.close()
    fs.rmSync(ctlDir, {recursive: true, force: true})
    if (d) fs.rmSync(d.dir, {recursive: true, force: true})
  })

  it('says meshd is not running, and how to start it, with exit 69', async () => {
    const r = await mesh(path.join(ctlDir, 'nothing.sock'), ['status'])
    expect(r.code).toBe(69)
    expect(r.stderr).toContain('nothing.sock')
    // oclif wraps long lines with a ' ›' gutter.
    expect(r.stderr.replace(/\s+›\s+/g, ' ')).toContain('mesh daemon run')
  })

  it('refuses a join string that is not an invite with exit 64', async () => {
    const r = await mesh(d.socketPath, ['join', 'hello'])
    expect(r.code).toBe(64)
    expect(r.stderr).toContain('INVALID_INVITE_STRING')
  })

  it('joins with the invite string and prints the address', async () => {
    const r = await mesh(d.socketPath, ['join', joinString, '--name', 'cli-node'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/joined cli as cli-node 10\.66\.0\.\d+ on tmesh0/)
    // Not on a terminal: its steps as plain lines on stderr, and no waiting by default.
    expect(r.stderr.split('\n').filter(Boolean)).toEqual([
      `registering with ${ctl.url}…`,
      expect.stringMatching(/^registered as cli-node in cli, 10\.66\.0\.\d+$/),
      'approved',
      expect.stringMatching(/^WireGuard tmesh0 up, 10\.66\.0\.\d+$/),
      'no peers yet',
    ])
  })

  it('with --wait, follows approval by an admin while it waits, then WireGuard', async () => {
    const call = (method: string, p: string, body?: unknown) =>
      fetch(`${ctl.url}${p}`, {
        method,
        headers: {authorization: `Bearer ${ctl.adminToken}`, 'content-type': 'application/json'},
        ...(body !== undefined && {body: JSON.stringify(body)}),
      }).then(async (res) => {
        if (!res.ok) throw new Error(`${p}: ${res.status} ${await res.text()}`)
        return res.json() as Promise<Record<string, unknown>>
      })
    await call('POST', '/api/v1/networks', {name: 'gated', cidr: '10.67.0.0/24', joinPolicy: 'approval'})
    const invite = String((await call('POST', '/api/v1/networks/gated/invites', {})).joinString)
    const other = await startFakeDaemon()
    try {
      const child = execa(
        process.execPath,
        [meshJs, 'join', invite, '--name', 'gated-1', '--wait', '--timeout', '30'],
        {
          reject: false,
          env: {MESH_SOCKET: other.socketPath, NO_COLOR: '1'},
          timeout: 60_000,
        },
      )
      // Approve when the command says it waits for it.
      let stderr = ''
      const waiting = new Promise<void>((resolve) =>
        child.stderr!.on('data', (d: Buffer) => {
          stderr += d.toString()
          if (stderr.includes('waiting for approval')) resolve()
        }),
      )
      await Promise.race([waiting, child])
      const nodes = (await call('GET', '/api/v1/networks/gated/nodes')) as {
        items: {id: string; status: string}[]
      }
      const pendingId = nodes.items.find((n) => n.status === 'pending')?.id
      expect(pendingId).toBeDefined()
      await call('POST', `/api/v1/nodes/${pendingId}/approve`)
      const done = await child
      const r = {code: done.exitCode, stdout: String(done.stdout), stderr: String(done.stderr)}
      expect(r.code, r.stderr).toBe(0)
      const lines = r.stderr.split('\n').filter(Boolean)
      expect(lines.indexOf('waiting for approval by an admin (`mesh node approve`)…')).toBeGreaterThan(0)
      expect(lines.indexOf('approved')).toBeGreaterThan(
        lines.indexOf('waiting for approval by an admin (`mesh node approve`)…'),
      )
      expect(lines).toContainEqual(expect.stringMatching(/^WireGuard tmesh0 up, 10\.67\.0\.\d+$/))
      expect(r.stdout).not.toContain('waiting for approval')
    } finally {
      await other.stop()
      fs.rmSync(other.dir, {recursive: true, force: true})
    }
  })

  it('status --json is the protocol Status; the table names network, interface and controller', async () => {
    const j = await mesh(d.socketPath, ['status', '--json'])
    const st = StatusSchema.parse(JSON.parse(j.stdout))
    expect(st.networks[0]).toMatchObject({name: 'cli', interface: 'tmesh0', up: true})
    const t = await mesh(d.socketPath, ['status', '--socket', d.socketPath], {MESH_SOCKET: '/nonexistent'})
    expect(t.code).toBe(0)
    expect(t.stdout).toContain('network:')
    expect(t.stdout).toContain('tmesh0 (up')
    expect(t.stdout).toContain('(no peers)')
  })

  it('ip prints the address alone, for scripts', async () => {
    const st = StatusSchema.parse(JSON.parse((await mesh(d.socketPath, ['status', '--json'])).stdout))
    expect((await mesh(d.socketPath, ['ip'])).stdout.trim()).toBe(st.networks[0]!.address)
    expect((await mesh(d.socketPath, ['ip', 'cli'])).stdout.trim()).toBe(st.networks[0]!.address)
    expect((await mesh(d.socketPath, ['ip', 'nope'])).code).toBe(66)
  })

  it('down is idempotent, up brings the network back', async () => {
    expect((await mesh(d.socketPath, ['down'])).stdout).toContain('cli: down')
    const again = await mesh(d.socketPath, ['down'])
    expect(again.code).toBe(0)
    expect(again.stderr).toContain('already down')
    expect(d.fake.interfaces.has('tmesh0')).toBe(false)
    expect((await mesh(d.socketPath, ['up', 'cli'])).stdout).toContain('cli: up')
    expect(d.fake.interfaces.has('tmesh0')).toBe(true)
    expect((await mesh(d.socketPath, ['up'])).stderr).toContain('already up')
  })

  it('up --auth-key joins once and only brings the network up when run again', async () => {
    const res = await fetch(`${ctl.url}/api/v1/networks/cli/authkeys`, {
      method: 'POST',
      headers: {authorization: `Bearer ${ctl.adminToken}`, 'content-type': 'application/json'},
      body: JSON.stringify({reusable: true}),
    })
    const {key} = (await res.json()) as {key: string}
    const other = await startFakeDaemon()
    try {
      const first = await mesh(
        other.socketPath,
        ['up', '--controller', ctl.url, '--name', 'ci-1', '--json'],
        {
          MESH_AUTH_KEY: key,
        },
      )
      expect(first.code, first.stdout + first.stderr).toBe(0)
      expect(JSON.parse(first.stdout).joined).toMatchObject({name: 'cli', nodeName: 'ci-1'})
      const second = await mesh(other.socketPath, ['up', '--controller', ctl.url, '--name', 'ci-1'], {
        MESH_AUTH_KEY: key,
      })
      expect(second.code).toBe(0)
      expect(second.stderr).toContain('already up')
      const noCtl = await mesh(other.socketPath, ['up', '--auth-key', key])
      expect(noCtl.code).toBe(64)
    } finally {
      await other.stop()
      fs.rmSync(other.dir, {recursive: true, force: true})
    }
  })

  it('leave forgets the network and removes the node at the controller', async () => {
    const r = await mesh(d.socketPath, ['leave', 'cli', '--json'])
    expect(JSON.parse(r.stdout)).toEqual({left: 'cli', interface: 'tmesh0', deregistered: true})
    expect((await mesh(d.socketPath, ['leave', 'cli'])).code).toBe(66)
  })

  it('leave still leaves with the controller down, and warns that the controller was not told', async () => {
    const res = await fetch(`${ctl.url}/api/v1/networks/cli/invites`, {
      method: 'POST',
      headers: {authorization: `Bearer ${ctl.adminToken}`, 'content-type': 'application/json'},
      body: '{}',
    })
    const {joinString: again} = (await res.json()) as {joinString: string}
    expect((await mesh(d.socketPath, ['join', again])).code).toBe(0)
    await ctl.close()
    const r = await mesh(d.socketPath, ['leave', 'cli'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/left cli/)
    expect(r.stderr).toMatch(/controller was not told/)
    expect((await mesh(d.socketPath, ['status', '--json'])).stdout).not.toContain('"cli"')
  })
})
