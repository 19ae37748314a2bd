/**
 * Logging in and out of a controller, and opening a client for the commands that need one.
 * Commands stay thin: they parse flags and call these.
 */
import {MeshError, isMeshError} from '../../shared/errors.js'
import type {Tenant, User, WhoamiResponse} from '../../shared/protocol/control-api.js'
import {ControllerClient, normalizeControllerUrl} from './controller-client.js'
import {
  type Session,
  deleteCredentials,
  readCredentials,
  resolveSession,
  writeCredentials,
} from './credentials.js'

/** What `mesh login` returns (and prints with --json): the login reply without the token. */
export interface LoginResult {
  controller: string
  user: User
  tenant: Tenant
  expiresAt: string
}

/** What `mesh whoami` returns: the controller's whoami reply and which controller answered. */
export type WhoamiResult = WhoamiResponse & {controller: string}

/** What `mesh logout` returns. */
export interface LogoutResult {
  /** The token was revoked on the controller. */
  revoked: boolean
  /** A credentials file was deleted. */
  removed: boolean
  /** Why the token could not be revoked, when it could not. */
  warning?: string
}

/** The logged-in client: credentials file and MESH_CONTROLLER / MESH_TOKEN; NOT_LOGGED_IN otherwise. */
export async function openSession(): Promise<{api: ControllerClient; session: Session}> {
  const session = resolveSession(await readCredentials())
  return {api: new ControllerClient({url: session.controller, token: session.token}), session}
}

/**
 * The controller to log in to: `configured` (the resolved cli.controller: --controller, else
 * MESH_CONTROLLER, else a config file), else the one logged in to before.
 */
export async function loginTarget(configured: string | undefined): Promise<string> {
  const text = configured ?? (await readCredentials().catch(() => undefined))?.controller
  if (!text) {
    throw new MeshError('INVALID_ARGUMENT', {
      message: 'which controller? --controller is required',
      hint: 'pass --controller URL, e.g. `mesh login --controller https://mesh.example.com`, or set cli.controller in a config file',
    })
  }
  return normalizeControllerUrl(text)
}

/** Logs in with a user name and password and stores the token (mode 0600). */
export async function login(opts: {
  controller: string
  username: string
  password: string
}): Promise<LoginResult> {
  const api = new ControllerClient({url: opts.controller})
  const reply = await api.login({username: opts.username, password: opts.password})
  await writeCredentials({
    controller: api.url,
    token: reply.token,
    user: reply.user.username,
    tenant: reply.tenant.name,
    expiresAt: reply.expiresAt,
  })
  return {controller: api.url, user: reply.user, tenant: reply.tenant, expiresAt: reply.expiresAt}
}

/**
 * Revokes the token on the controller, then deletes the file. Idempotent: not being logged in,
 * or a token the controller already refuses, is success. When the controller cannot be reached
 * the file is still deleted and the result carries a warning: the token stays valid there
 * until it expires.
 */
export async function logout(): Promise<LogoutResult> {
  let session: Session
  try {
    session = resolveSession(await readCredentials())
  } catch (err) {
    if (isMeshError(err) && (err.code === 'NOT_LOGGED_IN' || err.code === 'CONFIG_INVALID')) {
      return {revoked: false, removed: await deleteCredentials()}
    }
    throw err
  }
  let revoked = false
  let warning: string | undefined
  try {
    await new ControllerClient({url: session.controller, token: session.token, timeoutMs: 10_000}).logout()
    revoked = true
  } catch (err) {
    if (!isMeshError(err)) throw err
    if (err.code === 'CONTROLLER_UNREACHABLE') {
      warning = `${err.message}; the token was not revoked there and stays valid until it expires`
    } else if (err.code !== 'UNAUTHENTICATED' && err.code !== 'NODE_CREDENTIAL_INVALID') {
      throw err
    }
  }
  const removed = await deleteCredentials()
  return warning === undefined ? {revoked, removed} : {revoked, removed, warning}
}

/** Asks the controller who the token belongs to. */
export async function whoami(): Promise<WhoamiResult> {
  const {api} = await openSession()
  return {...(await api.whoami()), controller: api.url}
}
