/**
 * The daemon's one REST call to a controller: node registration (invite code or auth key plus
 * the public key made here). Replies and errors are parsed with the shared contract.
 */
import {MeshError} from '../shared/errors.js'
import {
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
