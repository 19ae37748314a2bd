/**
 * Logging in and out of a controller, and opening a client for the commands that need one.
 * Commands stay thin: they parse flags and call these.
 *
 * Tokens (controllers from schema 0014 on): the file holds a short-lived access token and the
 * session's refresh token. A client from openSession() refreshes by itself when the controller
 * answers TOKEN_EXPIRED (once per request, then it retries) or when the stored access token is
 * past its expiry before the first request, and writes the new pair to the file atomically. Two
 * CLI processes that find the same expired token must not both exchange the refresh token (the
 * controller would take the second exchange for a replay only outside its 10 s grace, but the
 * first process's new pair would be lost): a lock file beside credentials.json serialises the
 * refresh, and whoever gets the lock second finds the file already refreshed and uses that.
 */
import fs from 'node:fs/promises'
import {setTimeout as sleep} from 'node:timers/promises'
import {MeshError, isMeshError} from '../../shared/errors.js'
import type {
  LoginResponse,
  Session as Session_,
  Tenant,
  User,
  WhoamiResponse,
} from '../../shared/protocol/control-api.js'
import {decodeUserInviteString, isJoinString} from '../../shared/invite.js'
import {askText} from './prompt.js'
import {formatTime} from './render/resources.js'
import {renderTable, stdoutColor} from './render/table.js'
import {ControllerClient, normalizeControllerUrl} from './controller-client.js'
import {
  type Credentials,
  type Session,
  credentialsPath,
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
  /** When the access token expires (the CLI refreshes it by itself). */
  expiresAt: string
  /** The session this login started, and when it ends unless used (sliding). */
  sessionId?: string
  refreshExpiresAt?: string
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

/** A refresh lock older than this was left by a process that died: it is taken over. */
const LOCK_STALE_MS = 30_000
/** How long a process waits for another one's refresh before it goes ahead without the lock. */
const LOCK_WAIT_MS = 10_000
const LOCK_POLL_MS = 50

/**
 * Runs fn holding credentials.json.lock (O_EXCL create; removed after). Waits at most
 * LOCK_WAIT_MS for another process's lock, then runs fn anyway: the controller's grace for a
 * client's own race (REFRESH_TOKEN_RACED) covers what the lock would have prevented.
 */
async function withCredentialsLock<T>(fn: () => Promise<T>, file = credentialsPath()): Promise<T> {
  const lock = `${file}.lock`
  let held = false
  for (let waited = 0; waited < LOCK_WAIT_MS; waited += LOCK_POLL_MS) {
    try {
      const handle = await fs.open(lock, 'wx', 0o600)
      await handle.writeFile(`${process.pid}\n`)
      await handle.close()
      held = true
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const st = await fs.stat(lock).catch(() => undefined)
      if (st && Date.now() - st.mtimeMs > LOCK_STALE_MS) await fs.rm(lock, {force: true})
      else await sleep(LOCK_POLL_MS)
    }
  }
  try {
    return await fn()
  } finally {
    if (held) await fs.rm(lock, {force: true})
  }
}

/**
 * Exchanges the stored refresh token for a new pair and stores it; returns the new access
 * token. When the stored access token is no longer `used`, another process refreshed first:
 * its token is returned as it is.
 */
async function refreshStored(used: string): Promise<string> {
  return withCredentialsLock(async () => {
    const creds = await readCredentials()
    if (creds?.refreshToken === undefined) throw new MeshError('NOT_LOGGED_IN')
    if (creds.token !== used) return creds.token
    const api = new ControllerClient({url: creds.controller, timeoutMs: 10_000})
    let pair
    try {
      pair = await api.refresh({refreshToken: creds.refreshToken})
    } catch (err) {
      // Another process of this client (without the lock) exchanged it a moment ago.
      if (isMeshError(err) && err.code === 'REFRESH_TOKEN_RACED') {
        const again = await readCredentials()
        if (again && again.token !== used) return again.token
      }
      throw err
    }
    const next: Credentials = {
      ...creds,
      token: pair.token,
      expiresAt: pair.expiresAt,
      refreshToken: pair.refreshToken,
      refreshExpiresAt: pair.refreshExpiresAt,
      sessionId: pair.sessionId,
    }
    await writeCredentials(next)
    return pair.token
  })
}

/** A client for the session that refreshes the file's token when it has a refresh token. */
async function sessionClient(
  session: Session,
  file: Credentials | undefined,
  timeoutMs?: number,
): Promise<ControllerClient> {
  const refreshable = session.source.token === 'file' && file?.refreshToken !== undefined
  let token = session.token
  // Past its expiry by this machine's clock: refresh before the first request, not after it.
  if (refreshable && session.expiresAt !== undefined && Date.parse(session.expiresAt) <= Date.now()) {
    token = await refreshStored(token)
  }
  return new ControllerClient({
    url: session.controller,
    token,
    ...(timeoutMs === undefined ? {} : {timeoutMs}),
    ...(refreshable
      ? {
          refreshToken: async (code: 'TOKEN_EXPIRED' | 'UNAUTHENTICATED') => {
            if (code === 'TOKEN_EXPIRED') return (token = await refreshStored(token))
            // Refused outright: another process may have refreshed meanwhile, and the server
            // swept the old token; use what it stored, if anything changed.
            const now = await readCredentials()
            return now && now.token !== token ? (token = now.token) : undefined
          },
        }
      : {}),
  })
}

/**
 * The logged-in client: credentials file and MESH_CONTROLLER / MESH_TOKEN; NOT_LOGGED_IN
 * otherwise. With a stored refresh token it refreshes the access token by itself (see above).
 */
export async function openSession(): Promise<{api: ControllerClient; session: Session}> {
  const file = await readCredentials()
  const session = resolveSession(file)
  const api = await sessionClient(session, file)
  // The token a refresh before the first request stored, for callers that use it themselves
  // (the admin event stream).
  const stored = session.source.token === 'file' ? await readCredentials() : undefined
  if (stored && stored.controller === file?.controller && stored.token !== session.token) {
    session.token = stored.token
    session.expiresAt = stored.expiresAt
  }
  return {api, session}
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

/**
 * Logs in with a user name and password (and the account's one-time code when it has MFA on:
 * without one such an account answers MFA_REQUIRED) and stores the tokens (mode 0600).
 */
export async function login(opts: {
  controller: string
  username: string
  password: string
  otp?: string | undefined
}): Promise<LoginResult> {
  const api = new ControllerClient({url: opts.controller})
  const reply = await api.login({
    username: opts.username,
    password: opts.password,
    ...(opts.otp === undefined ? {} : {otp: opts.otp}),
  })
  return storeLogin(api.url, reply)
}

/** Stores a login reply's tokens (mode 0600) and returns what `mesh login` shows (password or OIDC). */
export async function storeLogin(controller: string, reply: LoginResponse): Promise<LoginResult> {
  await writeCredentials({
    controller,
    token: reply.token,
    user: reply.user.username,
    tenant: reply.tenant.name,
    expiresAt: reply.expiresAt,
    ...(reply.refreshToken === undefined
      ? {}
      : {
          refreshToken: reply.refreshToken,
          refreshExpiresAt: reply.refreshExpiresAt,
          sessionId: reply.sessionId,
        }),
  })
  return {
    controller,
    user: reply.user,
    tenant: reply.tenant,
    expiresAt: reply.expiresAt,
    ...(reply.sessionId === undefined ? {} : {sessionId: reply.sessionId}),
    ...(reply.refreshExpiresAt === undefined ? {} : {refreshExpiresAt: reply.refreshExpiresAt}),
  }
}

/**
 * `mesh signup`: makes the account a user invite string admits (on the controller the string
 * names) and logs in as it, storing the tokens as `mesh login` does.
 */
export async function signup(opts: {
  invite: string
  username: string
  password: string
}): Promise<LoginResult> {
  const decoded = userInvite(opts.invite)
  const api = new ControllerClient({url: decoded.controller})
  const reply = await api.signup({invite: decoded.code, username: opts.username, password: opts.password})
  return storeLogin(api.url, reply)
}

/** The controller and code of a user invite string; INVALID_ARGUMENT saying what it is otherwise. */
export function userInvite(invite: string): {controller: string; code: string} {
  const decoded = decodeUserInviteString(invite)
  if (!decoded) {
    throw new MeshError('INVALID_ARGUMENT', {
      message: isJoinString(invite)
        ? 'this is a device invite (meshinv1_...), not a user invite'
        : 'this is not a user invite string (meshuser1_...)',
      hint: isJoinString(invite)
        ? 'join a device with `mesh join <it>`; ask for a user invite (`mesh user invite`) to make an account'
        : 'pass the whole string `mesh user invite` printed',
    })
  }
  return decoded
}

/**
 * Revokes the token on the controller, then deletes the file. Idempotent: not being logged in,
 * or a token the controller already refuses, is success. When the controller cannot be reached
 * the file is still deleted and the result carries a warning: the token stays valid there
 * until it expires.
 */
/** Answers that mean the controller holds nothing to revoke for this login any more. */
const GONE: ReadonlySet<string> = new Set([
  'UNAUTHENTICATED',
  'NODE_CREDENTIAL_INVALID',
  'TOKEN_EXPIRED',
  'REFRESH_TOKEN_INVALID',
  'REFRESH_TOKEN_REUSED',
])

export async function logout(): Promise<LogoutResult> {
  let session: Session
  let file: Credentials | undefined
  try {
    file = await readCredentials()
    session = resolveSession(file)
  } catch (err) {
    if (isMeshError(err) && (err.code === 'NOT_LOGGED_IN' || err.code === 'CONFIG_INVALID')) {
      return {revoked: false, removed: await deleteCredentials()}
    }
    throw err
  }
  let revoked = false
  let warning: string | undefined
  try {
    // Logout revokes the session: its access and refresh tokens. An expired access token is
    // refreshed first, so that the session can be named.
    await (await sessionClient(session, file, 10_000)).logout()
    revoked = true
  } catch (err) {
    if (!isMeshError(err)) throw err
    if (err.code === 'CONTROLLER_UNREACHABLE') {
      warning = `${err.message}; the token was not revoked there and stays valid until it expires`
    } else if (!GONE.has(err.code)) {
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

/** `mesh session list`: the sessions as a table; the current one is marked. */
export const sessionsTable = (rows: readonly Session_[]): string =>
  renderTable(
    rows,
    [
      {header: 'ID', get: (s) => (s.current ? `${s.id} (this one)` : s.id)},
      {header: 'CREATED', get: (s) => formatTime(s.createdAt)},
      {header: 'LAST USED', get: (s) => formatTime(s.lastUsedAt)},
      {header: 'EXPIRES', get: (s) => formatTime(s.expiresAt)},
      {header: 'FROM', get: (s) => s.sourceAddress ?? ''},
    ],
    {color: stdoutColor(), empty: 'No sessions.'},
  )

/** What `mesh user mfa enable` returns: the setup, and whether it was confirmed here. */
export interface MfaEnableResult {
  secret: string
  uri: string
  enabled: boolean
  /** Set when it was confirmed here (on a terminal): shown once. */
  recoveryCodes?: string[]
}

/** The otpauth:// URI with a QR code to scan, as text for a terminal. */
export async function mfaEnableText(setup: {secret: string; uri: string}): Promise<string> {
  const {default: qrcode} = await import('qrcode-terminal')
  const qr = await new Promise<string>((resolve) => qrcode.generate(setup.uri, {small: true}, resolve))
  return [
    'Scan this with an authenticator app, or enter the secret by hand:',
    '',
    qr,
    `  ${setup.uri}`,
    `  secret: ${setup.secret}`,
    '',
  ].join('\n')
}

/**
 * Starts MFA, shows the setup, and on a terminal asks for one code and confirms it; without
 * one it stops after showing (MFA stays off until `mesh user mfa confirm CODE`).
 */
export async function enableMfa(opts: {
  show: (setup: {secret: string; uri: string}) => Promise<void>
  interactive: boolean
}): Promise<MfaEnableResult> {
  const {api} = await openSession()
  const setup = await api.enableMfa()
  await opts.show(setup)
  if (!opts.interactive) return {...setup, enabled: false}
  const code = await askText('Code from the app: ')
  const {recoveryCodes} = await api.confirmMfa({code})
  return {...setup, enabled: true, recoveryCodes}
}
