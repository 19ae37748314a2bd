// The controller client against a real HTTP server on a free port: how it builds requests, how
// it maps replies, error bodies, bad replies, refused connections and timeouts.
import http from 'node:http'
import type {AddressInfo} from 'node:net'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {MeshError} from '../../shared/errors.js'
import {MAX_CONTROLLER_REPLY_BYTES} from '../../shared/limits.js'
import {startHostileServer} from '../../test/hostile-server.js'
import {ControllerClient, normalizeControllerUrl} from './controller-client.js'

interface Seen {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  body: string
}

const network = {
  id: 'net_1',
  tenantId: 'ten_1',
  name: 'home-lab',
  cidr: '10.20.0.0/24',
  description: '',
  joinPolicy: 'invite',
  maxNodes: null,
  nodeCount: 0,
  createdAt: '2026-11-22T00:00:00.000Z',
}

let server: http.Server
let base: string
const seen: Seen[] = []
/** Replies by "METHOD path" (path without query); a function may look at the request. */
const stalled = new Set<string>()
const replies = new Map<string, (req: Seen) => {status: number; body: unknown}>()

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      const s: Seen = {method: req.method!, url: req.url!, headers: req.headers, body}
      seen.push(s)
      const key = `${req.method} ${req.url!.split('?')[0]}`
      if (stalled.has(key)) return // never answers: the client's deadline must fire
      const reply = replies.get(key)?.(s) ?? {
        status: 404,
        body: {error: {code: 'NOT_FOUND', message: 'no route', hint: 'h'}},
      }
      if (typeof reply.body === 'string') {
        res.writeHead(reply.status, {'content-type': 'text/plain'}).end(reply.body)
      } else {
        res.writeHead(reply.status, {'content-type': 'application/json'}).end(JSON.stringify(reply.body))
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

const last = (): Seen => seen[seen.length - 1]!

describe('ControllerClient', () => {
  it('fills path params (encoded), sends the bearer token and parses the reply with the schema', async () => {
    replies.set('GET /api/v1/networks/home%20lab%2F..', () => ({status: 200, body: network}))
    const api = new ControllerClient({url: `${base}/`, token: 'tok'})
    const net = await api.call('network.show', {params: {network: 'home lab/..'}})
    expect(net).toEqual(network)
    expect(last().headers.authorization).toBe('Bearer tok')
    expect(last().headers.accept).toBe('application/json')
  })

  it('sends a JSON body with the schema defaults filled in, and no token to auth-none routes', async () => {
    replies.set('POST /api/v1/login', () => ({
      status: 200,
      body: {
        token: 't2',
        expiresAt: '2026-12-22T00:00:00.000Z',
        user: {
          id: 'u1',
          tenantId: 'ten_1',
          username: 'admin',
          role: 'owner',
          superuser: true,
          createdAt: network.createdAt,
        },
        tenant: {id: 'ten_1', name: 'default', createdAt: network.createdAt},
      },
    }))
    replies.set('POST /api/v1/networks', (s) => ({status: 201, body: {...network, ...JSON.parse(s.body)}}))
    const api = new ControllerClient({url: base, token: 'tok'})
    expect((await api.login({username: 'admin', password: 'pw'})).token).toBe('t2')
    expect(last().headers.authorization).toBeUndefined()
    expect(last().headers['content-type']).toBe('application/json')
    await api.createNetwork({name: 'lab', cidr: '10.9.0.0/24'})
    expect(JSON.parse(last().body)).toEqual({
      name: 'lab',
      cidr: '10.9.0.0/24',
      description: '',
      joinPolicy: 'invite',
      maxNodes: null,
    })
  })

  it('keeps a path prefix of the controller URL', async () => {
    replies.set('GET /mesh/api/v1/networks/x', () => ({status: 200, body: network}))
    await new ControllerClient({url: `${base}/mesh/`, token: 't'}).showNetwork({network: 'x'})
    expect(last().url).toBe('/mesh/api/v1/networks/x')
  })

  it('refuses a body that breaks the route schema before sending anything', async () => {
    const before = seen.length
    const api = new ControllerClient({url: base, token: 't'})
    await expect(api.createNetwork({name: 'Bad_Name', cidr: '10.0.0.0/24'})).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      message: expect.stringMatching(/^invalid request: name: /),
    })
    expect(seen.length).toBe(before)
  })

  it('rebuilds the server error from its {error} body, with its exit code', async () => {
    replies.set('DELETE /api/v1/invites/inv_9', () => ({
      status: 403,
      body: {error: {code: 'FORBIDDEN', message: 'members may not revoke invites', hint: 'ask an admin'}},
    }))
    const err = await new ControllerClient({url: base, token: 't'})
      .revokeInvite({id: 'inv_9'})
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(MeshError)
    expect(err).toMatchObject({
      code: 'FORBIDDEN',
      exit: 77,
      message: 'members may not revoke invites',
      hint: 'ask an admin',
    })
  })

  it('maps an error reply without a mesh body to the generic code of its status', async () => {
    replies.set('GET /api/v1/whoami', () => ({status: 502, body: 'Bad Gateway'}))
    await expect(new ControllerClient({url: base, token: 't'}).whoami()).rejects.toMatchObject({
      code: 'INTERNAL',
      exit: 70,
    })
  })

  it('asks for pages that fit the reply cap even when every node field is at its maximum', async () => {
    const node = {
      id: `n_${'x'.repeat(16)}`,
      networkId: `n_${'y'.repeat(16)}`,
      name: 'n'.repeat(63),
      hostname: '漢'.repeat(253),
      os: '漢'.repeat(64),
      publicKey: Buffer.alloc(32, 7).toString('base64'),
      address: '10.255.255.254',
      status: 'active',
      online: true,
      lastSeen: '2026-11-22T00:00:00.000Z',
      endpoints: Array.from({length: 16}, () => '[2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535'),
      tags: Array.from({length: 32}, (_, t) => `tag:${String(t).padEnd(62, 't')}`),
      ephemeral: false,
      createdAt: '2026-11-22T00:00:00.000Z',
    }
    let asked = 0
    replies.set('GET /api/v1/networks/big/nodes', (s) => {
      asked = Number(new URL(s.url, base).searchParams.get('limit'))
      return {status: 200, body: {items: Array.from({length: asked}, () => node), nextCursor: null}}
    })
    const res = await new ControllerClient({url: base, token: 't'}).listAll('node.list', {
      params: {network: 'big'},
    })
    expect(asked).toBeGreaterThan(0)
    expect(res.items).toHaveLength(asked)
    expect(Buffer.byteLength(JSON.stringify({items: res.items, nextCursor: null}))).toBeLessThan(
      MAX_CONTROLLER_REPLY_BYTES,
    )
  })

  it('does not follow a redirect, so the token stays where it was sent', async () => {
    replies.set('GET /api/v1/users', () => ({status: 301, body: ''}))
    const before = seen.length
    await expect(new ControllerClient({url: base, token: 't'}).listUsers()).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('redirects (HTTP 301)'),
    })
    expect(seen.length).toBe(before + 1)
  })

  it('treats a 2xx reply that breaks the response schema as CONTROLLER_BAD_REPLY (exit 76), not as data', async () => {
    replies.set('GET /api/v1/nodes/n1', () => ({status: 200, body: {id: 'n1'}}))
    await expect(new ControllerClient({url: base, token: 't'}).showNode({id: 'n1'})).rejects.toMatchObject({
      code: 'CONTROLLER_BAD_REPLY',
      exit: 76,
      message: expect.stringContaining('does not understand'),
    })
  })

  it('treats a 2xx reply that is not JSON (a web page) as CONTROLLER_BAD_REPLY', async () => {
    replies.set('GET /api/v1/nodes/n2', () => ({status: 200, body: '<html>captive portal</html>'}))
    await expect(new ControllerClient({url: base, token: 't'}).showNode({id: 'n2'})).rejects.toMatchObject({
      code: 'CONTROLLER_BAD_REPLY',
      message: expect.stringContaining('(not JSON)'),
    })
  })

  it('stops reading an endless reply at 1 MiB with CONTROLLER_BAD_REPLY; the server wrote < 8 MiB', async () => {
    const hostile = await startHostileServer({kind: 'endless'})
    try {
      const err = await new ControllerClient({url: hostile.url, token: 't'}).whoami().catch((e: unknown) => e)
      expect(err).toMatchObject({
        code: 'CONTROLLER_BAD_REPLY',
        exit: 76,
        message: `the controller at ${hostile.url} sent a reply larger than 1 MiB`,
        hint: 'check the controller URL; the server at it is not a mesh controller or is misbehaving',
      })
      await hostile.drained()
      expect(hostile.bytesWritten).toBeGreaterThan(MAX_CONTROLLER_REPLY_BYTES)
      expect(hostile.bytesWritten).toBeLessThan(8 * 1024 * 1024)
    } finally {
      await hostile.close()
    }
  })

  it('reports a refused connection as CONTROLLER_UNREACHABLE naming the URL (exit 69)', async () => {
    const probe = http.createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const port = (probe.address() as AddressInfo).port
    await new Promise<void>((resolve) => probe.close(() => resolve()))
    const err = await new ControllerClient({url: `http://127.0.0.1:${port}`, token: 't'})
      .whoami()
      .catch((e: unknown) => e)
    expect(err).toMatchObject({
      code: 'CONTROLLER_UNREACHABLE',
      exit: 69,
      message: `cannot reach the controller at http://127.0.0.1:${port}`,
      detail: {reason: 'connection refused'},
    })
  })

  it('reports an unresolvable host as CONTROLLER_UNREACHABLE', async () => {
    // .invalid never resolves (RFC 2606), so no traffic leaves the machine.
    await expect(
      new ControllerClient({url: 'http://controller.invalid', token: 't'}).whoami(),
    ).rejects.toMatchObject({
      code: 'CONTROLLER_UNREACHABLE',
    })
  })

  it('gives up on a controller that never answers within the deadline', async () => {
    stalled.add('GET /api/v1/audit')
    const started = Date.now()
    const err = await new ControllerClient({url: base, token: 't', timeoutMs: 300})
      .audit()
      .catch((e: unknown) => e)
    expect(err).toMatchObject({code: 'CONTROLLER_UNREACHABLE', detail: {reason: 'timed out'}})
    expect(Date.now() - started).toBeLessThan(5000)
  })

  it('follows nextCursor across pages, and stops at --limit with the cursor kept', async () => {
    const all = Array.from({length: 7}, (_, i) => ({...network, id: `net_${i}`, name: `n${i}`}))
    replies.set('GET /api/v1/networks', (s) => {
      const q = new URL(s.url, base).searchParams
      const start = Number(q.get('cursor') ?? 0)
      const size = Math.min(3, Number(q.get('limit')))
      const next = start + size < all.length ? String(start + size) : null
      return {status: 200, body: {items: all.slice(start, start + size), nextCursor: next}}
    })
    const api = new ControllerClient({url: base, token: 't'})
    const everything = await api.listAll('network.list', {})
    expect(everything.items.map((n) => n.id)).toEqual(all.map((n) => n.id))
    expect(everything.nextCursor).toBeNull()
    const some = await api.listAll('network.list', {}, {limit: 4})
    expect(some.items).toHaveLength(4)
    expect(some.nextCursor).not.toBeNull()
  })
})

describe('normalizeControllerUrl', () => {
  it('drops trailing slashes and refuses other schemes, credentials and queries', () => {
    expect(normalizeControllerUrl('http://127.0.0.1:8080/')).toBe('http://127.0.0.1:8080')
    expect(normalizeControllerUrl(' https://mesh.example.com/base// ')).toBe('https://mesh.example.com/base')
    for (const bad of ['ftp://x', 'not a url', 'http://u:p@x', 'http://x/?a=1', 'http://x/#f']) {
      expect(() => normalizeControllerUrl(bad), bad).toThrow(
        expect.objectContaining({code: 'INVALID_ARGUMENT'}),
      )
    }
  })
})
