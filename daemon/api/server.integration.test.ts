// The local API over a real unix socket in a temp dir, with the in-memory WireGuard driver:
// validation, limits, protocol version, socket permissions and the CLI client's error mapping.
import {spawn, spawnSync} from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {connectError, DaemonClient} from '../../cli/lib/daemon-client.js'
import {isMeshError, type MeshError} from '../../shared/errors.js'
import {PROTOCOL_HEADER} from '../../shared/protocol/version.js'
import {FakeDriver} from '../testing/fake-driver.js'
import {seedNetwork, startFakeDaemon, tempDir, type FakeDaemon} from '../testing/harness.js'
import {groupId, serveApi, type Handlers} from './server.js'

function raw(
  socketPath: string,
  method: string,
  urlPath: string,
  opts: {headers?: Record<string, string>; body?: string | Buffer} = {},
): Promise<{status: number; body: {error: {code: string; message: string; hint: string}}}> {
  return new Promise((resolve, reject) => {
    const req = http.request({socketPath, method, path: urlPath, headers: opts.headers}, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        resolve({status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined})
      })
    })
    req.on('error', reject)
    if (opts.body !== undefined) req.end(opts.body)
    else req.end()
  })
}

const V = {[PROTOCOL_HEADER]: '1', 'content-type': 'application/json'}

describe('meshd local API', () => {
  let d: FakeDaemon
  beforeAll(async () => {
    d = await startFakeDaemon()
  })
  afterAll(async () => {
    await d?.stop()
    fs.rmSync(d.dir, {recursive: true, force: true})
  })

  it('answers status through the typed client with the chosen backend', async () => {
    const st = await new DaemonClient({socketPath: d.socketPath}).status()
    expect(st.backend).toBe('fake')
    expect(st.networks).toEqual([])
    expect(st.pid).toBe(process.pid)
  })

  it('creates the socket with mode 0660', () => {
    expect(fs.statSync(d.socketPath).mode & 0o777).toBe(0o660)
  })

  it('refuses a request without the protocol header, or with another version, with PROTOCOL_MISMATCH', async () => {
    const none = await raw(d.socketPath, 'GET', '/v1/status')
    expect(none.status).toBe(400)
    expect(none.body.error.code).toBe('PROTOCOL_MISMATCH')
    const other = await raw(d.socketPath, 'GET', '/v1/status', {headers: {[PROTOCOL_HEADER]: '999'}})
    expect(other.body.error.code).toBe('PROTOCOL_MISMATCH')
    expect(other.body.error.message).toContain('999')
  })

  it('answers malformed JSON with 400 INVALID_JSON and keeps running', async () => {
    const r = await raw(d.socketPath, 'POST', '/v1/up', {headers: V, body: '{"network":'})
    expect(r.status).toBe(400)
    expect(r.body.error).toMatchObject({code: 'INVALID_JSON', hint: expect.any(String)})
    expect((await raw(d.socketPath, 'GET', '/v1/status', {headers: V})).status).toBe(200)
  })

  it('names the bad field of a request that fails its schema', async () => {
    const r = await raw(d.socketPath, 'POST', '/v1/join', {
      headers: V,
      body: JSON.stringify({
        controller: 'http://127.0.0.1:9',
        invite: 'x'.repeat(20),
        authKey: 'y'.repeat(20),
      }),
    })
    expect(r.status).toBe(400)
    expect(r.body.error.code).toBe('VALIDATION_FAILED')
    expect(r.body.error.message).toContain('exactly one of invite and authKey')
    const extra = await raw(d.socketPath, 'POST', '/v1/up', {headers: V, body: '{"network":"a","evil":1}'})
    expect(extra.body.error.code).toBe('VALIDATION_FAILED')
    const badIf = await raw(d.socketPath, 'POST', '/v1/join', {
      headers: V,
      body: JSON.stringify({controller: 'http://127.0.0.1:9', invite: 'x'.repeat(20), interface: 'a/b'}),
    })
    expect(badIf.body.error.message).toContain('interface')
  })

  it('refuses a body over 1 MiB with 413', async () => {
    const r = await raw(d.socketPath, 'POST', '/v1/up', {
      headers: V,
      body: Buffer.alloc(1024 * 1024 + 10, 0x20),
    })
    expect(r.status).toBe(413)
    expect(r.body.error.code).toBe('PAYLOAD_TOO_LARGE')
    expect((await raw(d.socketPath, 'GET', '/v1/status', {headers: V})).status).toBe(200)
  })

  it('refuses a non-JSON content type with 415', async () => {
    const r = await raw(d.socketPath, 'POST', '/v1/up', {
      headers: {[PROTOCOL_HEADER]: '1', 'content-type': 'text/plain'},
      body: 'network=a',
    })
    expect(r.status).toBe(415)
  })

  it('answers an unknown path with 404 and a known path with the wrong method with 405', async () => {
    expect((await raw(d.socketPath, 'GET', '/v1/nope', {headers: V})).body.error.code).toBe('NOT_FOUND')
    const r = await raw(d.socketPath, 'DELETE', '/v1/status', {headers: V})
    expect(r.status).toBe(405)
    expect(r.body.error.code).toBe('METHOD_NOT_ALLOWED')
  })

  it('survives garbage that is not HTTP', async () => {
    await new Promise<void>((resolve) => {
      const c = net.connect(d.socketPath, () => c.end('\x00\x01 not http at all\r\n\r\n'))
      c.on('close', () => resolve())
      c.on('error', () => resolve())
      c.resume()
    })
    expect((await raw(d.socketPath, 'GET', '/v1/status', {headers: V})).status).toBe(200)
  })

  it('maps an error body back to a MeshError with its exit code', async () => {
    const err = await new DaemonClient({socketPath: d.socketPath}).leave({network: 'nowhere'}).catch((e) => e)
    expect(isMeshError(err) && err.code).toBe('NETWORK_NOT_JOINED')
    expect(err.exit).toBe(66)
  })

  it('maps a network name that is not joined to NETWORK_NOT_JOINED for up and down', async () => {
    const c = new DaemonClient({socketPath: d.socketPath})
    expect((await c.up({network: 'x'}).catch((e) => e)).code).toBe('NETWORK_NOT_JOINED')
    expect((await c.down({network: 'x'}).catch((e) => e)).code).toBe('NETWORK_NOT_JOINED')
    expect(await c.down({})).toEqual({changed: []})
  })
})

describe('socket lifecycle', () => {
  it('removes a stale socket left by a crash and refuses to start over a live one', async () => {
    const dir = tempDir()
    try {
      const sock = path.join(dir, 'meshd.sock')
      // A stale socket: a process that listened on it was killed, as a crashed meshd is.
      const holder = spawn(process.execPath, [
        '-e',
        `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`,
      ])
      await new Promise((r) => holder.stdout.once('data', r))
      holder.kill('SIGKILL')
      await new Promise((r) => holder.once('exit', r))
      expect(fs.existsSync(sock)).toBe(true)
      const a = await startFakeDaemon({dir})
      try {
        expect((await new DaemonClient({socketPath: sock}).status()).backend).toBe('fake')
        const second = await startFakeDaemon({dir}).catch((e) => e)
        expect(second.code).toBe('LISTEN_FAILED')
        expect(second.message).toContain('already listening')
      } finally {
        await a.stop()
      }
      expect(fs.existsSync(sock)).toBe(false)
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})

describe('a second meshd on the same socket', () => {
  it('gives up before it loads state or touches an interface of the running one', async () => {
    const dir = tempDir()
    try {
      // A joined network on disk (its controller unreachable), so a daemon has an interface to build.
      seedNetwork(dir)
      const a = await startFakeDaemon({dir})
      try {
        expect(a.fake.interfaces.has('tmesh0')).toBe(true)
        const second = new FakeDriver()
        const err = await startFakeDaemon({dir, driver: second}).catch((e) => e)
        expect(err.code).toBe('LISTEN_FAILED')
        expect(second.calls).toEqual([])
      } finally {
        await a.stop()
      }
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})

describe('socket ownership', () => {
  const nogroup = groupId('nogroup')
  it.skipIf(process.getuid?.() !== 0 || nogroup === undefined)(
    'gives the socket to the named group so its members may connect',
    async () => {
      const dir = tempDir()
      const server = await serveApi({
        socketPath: path.join(dir, 's.sock'),
        group: 'nogroup',
        handlers: {} as Handlers,
        log: {info() {}, warn() {}, error() {}, debug() {}},
      })
      try {
        const st = fs.statSync(server.socketPath)
        expect(st.gid).toBe(nogroup)
        expect(st.uid).toBe(0)
        expect(st.mode & 0o777).toBe(0o660)
      } finally {
        await server.close()
        fs.rmSync(dir, {recursive: true, force: true})
      }
    },
  )
})

describe('DaemonClient errors', () => {
  it('reports DAEMON_UNREACHABLE with the socket path when nothing listens', async () => {
    const dir = tempDir()
    try {
      const sock = path.join(dir, 'missing.sock')
      const err = await new DaemonClient({socketPath: sock}).status().catch((e) => e)
      expect(err.code).toBe('DAEMON_UNREACHABLE')
      expect(err.exit).toBe(69)
      expect(err.message).toContain(sock)
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })

  it('maps EACCES to SOCKET_PERMISSION_DENIED (exit 77) with the socket path', () => {
    const eacces = Object.assign(new Error('connect EACCES /x.sock'), {code: 'EACCES'})
    const err = connectError(eacces, '/x.sock', 1000)
    expect(isMeshError(err) && err.code).toBe('SOCKET_PERMISSION_DENIED')
    expect(isMeshError(err) && err.exit).toBe(77)
    expect(err.message).toContain('/x.sock')
    expect(
      (connectError(Object.assign(new Error('x'), {code: 'ECONNREFUSED'}), '/y', 1) as MeshError).code,
    ).toBe('DAEMON_UNREACHABLE')
  })

  // Root bypasses file permissions, so the refusal is shown with a process running as nobody.
  const canDropToNobody =
    process.getuid?.() === 0 && spawnSync('python3', ['-c', '0'], {uid: 65534, gid: 65534}).status === 0

  it.skipIf(!canDropToNobody)('refuses users outside root and the mesh group at the socket', async () => {
    const dir = tempDir()
    fs.chmodSync(dir, 0o755)
    const d = await startFakeDaemon({dir})
    try {
      const probe = (uid: number, gid: number) =>
        spawnSync(
          'python3',
          [
            '-c',
            'import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(sys.argv[1]); print("connected")\nexcept PermissionError: print("EACCES")',
            d.socketPath,
          ],
          {uid, gid},
        )
          .stdout.toString()
          .trim()
      expect(probe(65534, 65534)).toBe('EACCES')
      expect(probe(0, 0)).toBe('connected')
    } finally {
      await d.stop()
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})
