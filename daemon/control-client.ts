/**
 * The daemon's REST calls to a controller: node registration (invite code or auth key plus the
 * public key made here) and self-removal with the node credential. Replies and errors are
 * parsed with the shared contract.
 */
import type {z} from 'zod'
import {MeshError} from '../shared/errors.js'
import {
  MAX_CONTROLLER_REPLY_BYTES,
  ReplyTooLargeError,
  formatByteLimit,
  readCapped,
} from '../shared/limits.js'
import {
  ROUTES,
  type Node,
  type RegisterRequest,
  type RegisterResponse,
  type RouteId,
} from '../shared/protocol/control-api.js'

/**
 * Calls one route of the controller's table and parses the reply with the route's schema.
 * No answer → CONTROLLER_UNREACHABLE; an error body → that error (MeshError.fromWire); a reply
 * over MAX_CONTROLLER_REPLY_BYTES, not JSON, or outside the contract → CONTROLLER_BAD_REPLY. The
 * controller comes from a join string, so it may be hostile: the body is read up to the cap and
 * the request aborted there, never buffered whole.
 */
async function callController<R extends RouteId>(
  controller: string,
  id: R,
  opts: {body?: unknown; credential?: string; timeoutMs: number},
): Promise<z.infer<(typeof ROUTES)[R]['response']>> {
  const route = ROUTES[id]
  const url = new URL(route.path, controller.endsWith('/') ? controller : `${controller}/`)
  const headers: Record<string, string> = {accept: 'application/json'}
  if (opts.body !== undefined) headers['content-type'] = 'application/json'
  if (opts.credential !== undefined) headers.authorization = `Bearer ${opts.credential}`
  const abort = new AbortController()
  const unreachable = (err: unknown): MeshError => {
    const e = err as Error & {cause?: unknown}
    const reason = e.name === 'TimeoutError' ? 'timed out' : String(e.cause ?? e.message)
    return new MeshError('CONTROLLER_UNREACHABLE', {
      message: `cannot reach the controller at ${url.origin}: ${reason}`,
    })
  }
  let res: Response
  let text: string
  try {
    res = await fetch(url, {
      method: route.method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: AbortSignal.any([abort.signal, AbortSignal.timeout(opts.timeoutMs)]),
    })
  } catch (err) {
    throw unreachable(err)
  }
  try {
    text = res.body
      ? await readCapped(
          res.body,
          MAX_CONTROLLER_REPLY_BYTES,
          () => abort.abort(),
          res.headers.get('content-length'),
        )
      : ''
  } catch (err) {
    if (err instanceof ReplyTooLargeError) {
      throw new MeshError('CONTROLLER_BAD_REPLY', {
        message: `the controller at ${url.origin} sent a reply larger than ${formatByteLimit(err.limit)}`,
      })
    }
    throw unreachable(err)
  }
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    body = undefined
  }
  if (!res.ok) throw MeshError.fromWire(body, res.status)
  const parsed = route.response.safeParse(body)
  if (!parsed.success) {
    throw new MeshError('CONTROLLER_BAD_REPLY', {
      message: `the controller at ${url.origin} sent a ${id} reply mesh does not understand${body === undefined ? ' (not JSON)' : ''}`,
    })
  }
  return parsed.data as z.infer<(typeof ROUTES)[R]['response']>
}

/**
 * Swaps this node's WireGuard public key at the controller (`POST /api/v1/node/rotate-key` with
 * its credential); returns the node as the controller now has it (new key, new expiry).
 */
export async function rotateNodeKey(
  controller: string,
  credential: string,
  publicKey: string,
  timeoutMs = 15_000,
): Promise<Node> {
  return callController(controller, 'node.rotateKey', {credential, body: {publicKey}, timeoutMs})
}

export async function registerNode(controller: string, req: RegisterRequest): Promise<RegisterResponse> {
  return callController(controller, 'register', {body: req, timeoutMs: 15_000})
}

/**
 * Removes this node at the controller (`POST /api/v1/node/leave` with its credential). Throws
 * CONTROLLER_UNREACHABLE when the controller does not answer, the controller's error otherwise.
 */
export async function deregisterNode(
  controller: string,
  credential: string,
  timeoutMs = 5_000,
): Promise<void> {
  await callController(controller, 'node.leave', {credential, timeoutMs})
}
