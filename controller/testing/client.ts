/**
 * A minimal HTTP client for controller tests: never throws on a status, returns the parsed
 * body and the headers; and the two admin steps most tests start with, a network made and a
 * node joined, which do throw when the controller refuses. Test-only (controller/testing is
 * not built into dist).
 */
import {generateKeyPairSync} from 'node:crypto'

export interface Reply<T = unknown> {
  status: number
  body: T
  text: string
  headers: Headers
}

export interface Client {
  // Tests read reply bodies loosely; the server's own schemas are what is under test.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  req<T = any>(
    method: string,
    path: string,
    opts?: {token?: string; body?: unknown; raw?: string | Buffer; contentType?: string | null},
  ): Promise<Reply<T>>
}

export function client(baseUrl: string): Client {
  return {
    async req(method, path, opts = {}) {
      const headers: Record<string, string> = {}
      if (opts.token) headers.authorization = `Bearer ${opts.token}`
      let body: string | Buffer | undefined
      if (opts.raw !== undefined) body = opts.raw
      else if (opts.body !== undefined) body = JSON.stringify(opts.body)
      if (body !== undefined && opts.contentType !== null)
        headers['content-type'] = opts.contentType ?? 'application/json'
      const res = await fetch(new URL(path, baseUrl), {
        method,
        headers,
        body,
        signal: AbortSignal.timeout(30_000),
      })
      const text = await res.text()
      let parsed: unknown
      try {
        parsed = text ? JSON.parse(text) : undefined
      } catch {
        parsed = undefined
      }
      return {status: res.status, body: parsed as never, text, headers: res.headers}
    },
  }
}

/**
 * A WireGuard-style public key (the private half is thrown away). node:crypto's X25519 is ~15x
 * faster than tweetnacl's, which matters when a test registers thousands of nodes.
 */
export function publicKey(): string {
  const jwk = generateKeyPairSync('x25519').publicKey.export({format: 'jwk'})
  return Buffer.from(jwk.x as string, 'base64url').toString('base64')
}

/** Who acts as the admin: a controller's URL (or a load balancer's) and an admin's token. A TestController is one. */
export interface AdminAccess {
  readonly url: string
  readonly adminToken: string
}

/** The request of a test that only needs a network; other fields of the API go in as they are. */
export type NetworkRequest = {
  name: string
  cidr: string
  /** The API's default ('invite') when absent; joinNode() needs 'open'. */
  joinPolicy?: 'open' | 'invite' | 'approval'
} & Record<string, unknown>

export interface CreatedNetwork {
  id: string
  name: string
  cidr: string
}

export interface JoinedNode {
  node: {id: string; name: string; status: string}
  /** The node's credential: a netmap session's or a relay's bearer token. */
  credential: string
}

/** Creates a network as the admin, sending `req` as it is; throws with the controller's answer unless it is a 201. */
export async function createNetwork(ctl: AdminAccess, req: NetworkRequest): Promise<CreatedNetwork> {
  const r = await client(ctl.url).req('POST', '/api/v1/networks', {
    token: ctl.adminToken,
    body: req,
  })
  if (r.status !== 201) throw new Error(`create network ${req.name}: ${r.status} ${r.text}`)
  return r.body as CreatedNetwork
}

/**
 * Registers a new node (a fresh key) in an open network with the admin's token; throws with the
 * controller's answer unless it is a 201. For approval networks see joinWithAuthKey().
 */
export async function joinNode(ctl: AdminAccess, networkId: string, name: string): Promise<JoinedNode> {
  const r = await client(ctl.url).req('POST', '/api/v1/register', {
    token: ctl.adminToken,
    body: {network: networkId, publicKey: publicKey(), name},
  })
  if (r.status !== 201) throw new Error(`join ${name}: ${r.status} ${r.text}`)
  return r.body as JoinedNode
}

/**
 * Registers a new node with a fresh auth key of the network (single-use, not pre-approved): in
 * an approval network the node is pending, as one that joined by itself would be. Throws unless
 * both steps get a 201.
 */
export async function joinWithAuthKey(
  ctl: AdminAccess,
  networkId: string,
  name: string,
): Promise<JoinedNode> {
  const api = client(ctl.url)
  const k = await api.req('POST', `/api/v1/networks/${networkId}/authkeys`, {token: ctl.adminToken, body: {}})
  if (k.status !== 201) throw new Error(`auth key for ${name}: ${k.status} ${k.text}`)
  const r = await api.req('POST', '/api/v1/register', {
    body: {authKey: k.body.key, publicKey: publicKey(), name},
  })
  if (r.status !== 201) throw new Error(`join ${name} with an auth key: ${r.status} ${r.text}`)
  return r.body as JoinedNode
}
