/**
 * The daemon's REST calls to a controller: node registration (invite code or auth key plus the
 * public key made here) and self-removal with the node credential. Replies and errors are
 * parsed with the shared contract.
 */
import {MeshError} from '../shared/errors.js'
import {
  OkSchema,
  ROUTES,
  RegisterResponseSchema,
  type RegisterRequest,
  type RegisterResponse,
} from '../shared/protocol/control-api.js'

export async function registerNode(controller: string, req: RegisterRequest): Promise<RegisterResponse> {
  const url = new URL(ROUTES.register.path, controller.endsWith('/') ? controller : `${controller}/`)
  let res: Response
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: {'content-type': 'application/json'},
      body: JSON.stringify(req),
      signal: AbortSignal.timeout(15_000),
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
  const parsed = RegisterResponseSchema.safeParse(body)
  if (!parsed.success)
    throw new MeshError('CONTROLLER_UNREACHABLE', {
      message: `the controller at ${url.origin} sent a registration reply mesh does not understand`,
    })
  return parsed.data
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
  const url = new URL(ROUTES['node.leave'].path, controller.endsWith('/') ? controller : `${controller}/`)
  let res: Response
  try {
    res = await fetch(url, {
      method: ROUTES['node.leave'].method,
      headers: {authorization: `Bearer ${credential}`},
      signal: AbortSignal.timeout(timeoutMs),
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
  if (!OkSchema.safeParse(body).success)
    throw new MeshError('CONTROLLER_UNREACHABLE', {
      message: `the controller at ${url.origin} sent a leave reply mesh does not understand`,
    })
}
