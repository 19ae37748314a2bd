/**
 * The daemon's REST calls to a controller: node registration (invite code or auth key plus the
 * public key made here) and self-removal with the node credential. Replies and errors are
 * parsed with the shared contract.
 */
import type {z} from 'zod'
import {MeshError} from '../shared/errors.js'
import {
  ROUTES,
  type RegisterRequest,
  type RegisterResponse,
  type RouteId,
} from '../shared/protocol/control-api.js'

/**
 * Calls one route of the controller's table and parses the reply with the route's schema.
 * No answer → CONTROLLER_UNREACHABLE; an error body → that error (MeshError.fromWire); a reply
 * outside the contract → CONTROLLER_UNREACHABLE too, since nothing here could use it.
 */
async function callController<R extends RouteId>(
  controller: string,
  id: R,
  opts: {body?: unknown; credential?: string; timeoutMs: number},
): Promise<z.infer<(typeof ROUTES)[R]['response']>> {
  const route = ROUTES[id]
  const url = new URL(route.path, controller.endsWith('/') ? controller : `${controller}/`)
  const headers: Record<string, string> = {}
  if (opts.body !== undefined) headers['content-type'] = 'application/json'
  if (opts.credential !== undefined) headers.authorization = `Bearer ${opts.credential}`
  let res: Response
  try {
    res = await fetch(url, {
      method: route.method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: AbortSignal.timeout(opts.timeoutMs),
    })
  } catch (err) {
    throw new MeshError('CONTROLLER_UNREACHABLE', {
      message: `cannot reach the controller at ${url.origin}: ${(err as Error).cause ?? (err as Error).message}`,
    })
  }
  const text = await res.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    body = undefined
  }
  if (!res.ok) throw MeshError.fromWire(body, res.status)
  const parsed = route.response.safeParse(body)
  if (!parsed.success) {
    throw new MeshError('CONTROLLER_UNREACHABLE', {
      message: `the controller at ${url.origin} sent a ${id} reply mesh does not understand`,
    })
  }
  return parsed.data as z.infer<(typeof ROUTES)[R]['response']>
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
