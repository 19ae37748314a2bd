/**
 * Test helpers for the controller hardening tests: a raw HTTP client that never throws on a
 * status, a typed caller for ROUTES, fixture builders that go through the public API, a child
 * process controller started from the built CLI, and SQLite integrity checks.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {existsSync} from 'node:fs'
import {fileURLToPath} from 'node:url'
import path from 'node:path'
import {createInterface} from 'node:readline'
import Database from 'better-sqlite3'
import nacl from 'tweetnacl'
import {Agent, getGlobalDispatcher, type Dispatcher} from 'undici'
import WebSocket from 'ws'
import {ERRORS, isErrorCode} from '../../shared/errors.js'
import {ROUTES, type RouteDef, type RouteId} from '../../shared/protocol/control-api.js'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

// ---------------------------------------------------------------------------------------------
// Raw HTTP

export interface HttpReply {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  /** The parsed body, or undefined when it is not JSON. */
  json: unknown
}

export interface HttpOptions {
  token?: string
  /** Serialised as JSON with Content-Type: application/json. */
  body?: unknown
  /** Sent as is; `contentType` says what header goes with it (null: none). */
  rawBody?: string | Buffer
  contentType?: string | null
  headers?: Record<string, string>
  dispatcher?: Dispatcher
  /** Milliseconds until the whole request is given up. */
  timeoutMs?: number
}

/** One keep-alive pool per test file keeps socket churn (and TIME_WAIT) low. */
export const newAgent = (connections = 16): Agent =>
  new Agent({
    connections,
    pipelining: 1,
    keepAliveTimeout: 10_000,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  })

/** Sends one request and returns whatever came back; only transport failures throw. */
export async function http(
  baseUrl: string,
  method: string,
  pathAndQuery: string,
  opts: HttpOptions = {},
): Promise<HttpReply> {
  const headers: Record<string, string> = {...opts.headers}
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`
  let body: string | Buffer | undefined
  if (opts.rawBody !== undefined) {
    body = opts.rawBody
    if (opts.contentType !== null) headers['content-type'] = opts.contentType ?? 'application/json'
  } else if (opts.body !== undefined) {
    body = JSON.stringify(opts.body)
    headers['content-type'] = opts.contentType ?? 'application/json'
  } else if (opts.contentType) {
    headers['content-type'] = opts.contentType
  }
  // origin + path, never new URL(path, base): a path such as //x/y must stay a path.
  const res = await (opts.dispatcher ?? getGlobalDispatcher()).request({
    origin: new URL(baseUrl).origin,
    path: pathAndQuery,
    method: method as Dispatcher.HttpMethod,
    headers,
    body,
    signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
  })
  const text = await res.body.text()
  let json: unknown
  try {
    json = text.length > 0 ? JSON.parse(text) : undefined
  } catch {
    json = undefined
  }
  return {status: res.statusCode, headers: res.headers, text, json}
}

/** Replaces `:name` segments with URI-encoded values; a missing value is a bug in the test. */
export function fillPath(template: string, params: Record<string, string> = {}): string {
  return template.replace(/:([A-Za-z]+)/g, (_, name: string) => {
    const value = params[name]
    if (value === undefined) throw new Error(`no value for :${name} in ${template}`)
    return encodeURIComponent(value)
  })
}

export function withQuery(p: string, query?: Record<string, string>): string {
  if (!query || Object.keys(query).length === 0) return p
  return `${p}?${new URLSearchParams(query).toString()}`
}

/**
 * Why a reply is not a well-formed error, or undefined when it is: the body must be
 * {"error":{"code","message","hint"}}, the code must be in shared/errors.ts, and the HTTP
 * status must be the one that table gives the code.
 */
export function wireErrorProblem(reply: HttpReply): string | undefined {
  const err = (reply.json as {error?: unknown} | undefined)?.error as
    {code?: unknown; message?: unknown; hint?: unknown} | undefined
  if (!err || typeof err !== 'object') return `not an {error:{...}} body: ${reply.text.slice(0, 200)}`
  if (!isErrorCode(err.code)) return `unknown error code ${JSON.stringify(err.code)}`
  if (typeof err.message !== 'string' || err.message.length === 0) return 'error.message is not a string'
  if (typeof err.hint !== 'string' || err.hint.length === 0) return 'error.hint is not a string'
  if (ERRORS[err.code].status !== reply.status)
    return `status ${reply.status} but ${err.code} is ${ERRORS[err.code].status} in shared/errors.ts`
  return undefined
}

export const errorCode = (reply: HttpReply): string | undefined =>
  ((reply.json as {error?: {code?: unknown}} | undefined)?.error?.code as string | undefined) ?? undefined

// ---------------------------------------------------------------------------------------------
// Typed API calls

export interface CallOptions {
  token?: string
  params?: Record<string, string>
  query?: Record<string, string>
  body?: unknown
}

/** A client for one controller: `call` returns the raw reply, `ok` insists on the route's status. */
export class Api {
  constructor(
    readonly url: string,
    readonly dispatcher?: Dispatcher,
  ) {}

  call(id: RouteId, opts: CallOptions = {}): Promise<HttpReply> {
    const r: RouteDef = ROUTES[id]
    // Routes with a body schema get `{}` when the caller gives none (all their fields may default).
    const body = opts.body ?? (r.body ? {} : undefined)
    return http(this.url, r.method, withQuery(fillPath(r.path, opts.params), opts.query), {
      token: opts.token,
      body,
      dispatcher: this.dispatcher,
    })
  }

  /** Calls a route and returns its reply body; throws with the reply when the status is not the route's. */
  async ok<T = unknown>(id: RouteId, opts: CallOptions = {}): Promise<T> {
    const reply = await this.call(id, opts)
    if (reply.status !== ROUTES[id].status)
      throw new Error(
        `${id}: expected ${ROUTES[id].status}, got ${reply.status}: ${reply.text.slice(0, 500)}`,
      )
    return reply.json as T
  }
}

// ---------------------------------------------------------------------------------------------
// Fixture data

let seq = 0
/** A fresh name that passes NameSchema and UsernameSchema, unique within the process. */
export const uniqueName = (prefix: string): string =>
  `${prefix}-${process.pid.toString(36)}-${(seq++).toString(36)}-${Math.random().toString(36).slice(2, 6)}`

let cidrSeq = 0
/** A fresh /24 that overlaps no other CIDR this process handed out. */
export const uniqueCidr24 = (): string => {
  const n = cidrSeq++
  return `10.${100 + Math.floor(n / 256)}.${n % 256}.0/24`
}

/** An X25519 key pair as WireGuard prints it (base64); only the public half leaves the test. */
export function keyPair(): {publicKey: string; privateKey: string} {
  const kp = nacl.box.keyPair()
  return {
    publicKey: Buffer.from(kp.publicKey).toString('base64'),
    privateKey: Buffer.from(kp.secretKey).toString('base64'),
  }
}

export const registerBody = (secret: {authKey: string} | {invite: string}, name = uniqueName('n')) => ({
  ...secret,
  publicKey: keyPair().publicKey,
  name,
  hostname: `${name}.test`,
  os: 'linux',
})

// ---------------------------------------------------------------------------------------------
// SQLite

/** Runs PRAGMA integrity_check on a database file opened read-only; 'ok' when healthy. */
export function integrityCheck(dbPath: string): string {
  const db = new Database(dbPath, {readonly: true, fileMustExist: true})
  try {
    const rows = db.pragma('integrity_check') as {integrity_check: string}[]
    return rows.map((r) => r.integrity_check).join('; ')
  } finally {
    db.close()
  }
}

// ---------------------------------------------------------------------------------------------
// A controller started from the built CLI, as a child process

export interface ChildController {
  url: string
  pid: number
  child: ChildProcess
  /** Everything it wrote to stdout and stderr so far (for failure messages). */
  output: string[]
  /** SIGKILL, then wait for the exit. */
  kill(): Promise<void>
  /** SIGTERM, wait up to 10 s, then SIGKILL. */
  stop(): Promise<void>
}

export const CLI_BUILT = existsSync(path.join(REPO_ROOT, 'dist/cli/commands/controller/start.js'))

/**
 * Starts `node bin/mesh.js controller start` on a data dir and resolves once it logs the
 * "listening" line with its URL. Requires `bash scripts/build.sh` to have run.
 */
export async function startCliController(opts: {
  dataDir: string
  /** The SQLite file; or give `database`. */
  dbPath?: string
  /** A --database URL (postgres://… for a replica); overrides dbPath. */
  database?: string
  adminPassword: string
  timeoutMs?: number
  /** Extra `controller start` flags. */
  args?: readonly string[]
}): Promise<ChildController> {
  const child = spawn(
    process.execPath,
    [
      'bin/mesh.js',
      'controller',
      'start',
      '--data-dir',
      opts.dataDir,
      '--listen',
      '127.0.0.1:0',
      '--database',
      opts.database ?? `sqlite:${opts.dbPath ?? path.join(opts.dataDir, 'mesh.db')}`,
      ...(opts.args ?? []),
    ],
    {
      cwd: REPO_ROOT,
      env: {...process.env, MESH_ADMIN_PASSWORD: opts.adminPassword},
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  const output: string[] = []
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const isRunning = () => child.exitCode === null && child.signalCode === null
  const kill = async () => {
    if (isRunning()) child.kill('SIGKILL')
    await exited
  }
  const stop = async () => {
    if (isRunning()) child.kill('SIGTERM')
    const timer = setTimeout(() => {
      if (isRunning()) child.kill('SIGKILL')
    }, 10_000)
    await exited
    clearTimeout(timer)
  }
  createInterface({input: child.stderr!}).on('line', (l) => output.push(`stderr: ${l}`))
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`controller did not log "listening" within ${opts.timeoutMs ?? 20_000} ms`)),
        opts.timeoutMs ?? 20_000,
      )
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`controller exited (${code ?? signal}) before listening`))
      })
      createInterface({input: child.stdout!}).on('line', (line) => {
        output.push(line)
        if (!line.includes('"listening"')) return
        try {
          const rec = JSON.parse(line) as {url?: string}
          if (rec.url) {
            clearTimeout(timer)
            resolve(rec.url)
          }
        } catch {
          // Not JSON: keep waiting for a line that is.
        }
      })
    })
    return {url, pid: child.pid!, child, output, kill, stop}
  } catch (err) {
    await kill()
    throw new Error(`${(err as Error).message}\n${output.slice(-20).join('\n')}`, {cause: err})
  }
}

/** Reads every page of a paginated list route. */
export async function listAll<T>(api: Api, id: RouteId, opts: CallOptions, maxPages = 1000): Promise<T[]> {
  const items: T[] = []
  let cursor: string | null = null
  for (let i = 0; i < maxPages; i++) {
    const query: Record<string, string> = {...opts.query, limit: '500'}
    if (cursor) query.cursor = cursor
    const pageReply: {items: T[]; nextCursor: string | null} = await api.ok(id, {...opts, query})
    items.push(...pageReply.items)
    cursor = pageReply.nextCursor
    if (!cursor) return items
  }
  throw new Error(`${id}: more than ${maxPages} pages`)
}

/** Runs `fn` over `items` with at most `limit` in flight; results keep the input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
) {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i]!, i)
    }
  }
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker))
  return out
}

// ---------------------------------------------------------------------------------------------
// WebSocket sessions

export interface WsSession {
  /** Parsed frames in arrival order. */
  frames: Record<string, unknown>[]
  /** Close code, once closed. */
  closeCode?: number
  /** Resolves with the first frame (index >= from) that satisfies `pred`; rejects after `ms`. */
  waitFor(
    pred: (f: Record<string, unknown>) => boolean,
    ms?: number,
    from?: number,
  ): Promise<Record<string, unknown>>
  /** Resolves once the socket is closed (or after `ms`). */
  closed(ms?: number): Promise<number | undefined>
  close(): void
}

/** Opens a netmap or event stream with a bearer credential and records what arrives. */
export function openStream(baseUrl: string, wsPath: string, credential: string): WsSession {
  const ws = new WebSocket(baseUrl.replace(/^http/, 'ws') + wsPath, {
    headers: {authorization: `Bearer ${credential}`},
    perMessageDeflate: false,
  })
  const session: WsSession = {
    frames: [],
    async waitFor(pred, ms = 5_000, from = 0) {
      const deadline = Date.now() + ms
      for (;;) {
        const hit = session.frames.slice(from).find(pred)
        if (hit) return hit
        if (Date.now() > deadline || session.closeCode !== undefined)
          throw new Error(
            `no matching frame within ${ms} ms (close ${session.closeCode ?? 'none'}); got ${JSON.stringify(session.frames).slice(0, 500)}`,
          )
        await new Promise((r) => setTimeout(r, 10))
      }
    },
    async closed(ms = 5_000) {
      const deadline = Date.now() + ms
      while (session.closeCode === undefined && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 10))
      return session.closeCode
    },
    close: () => ws.terminate(),
  }
  ws.on('message', (d: Buffer) => session.frames.push(JSON.parse(d.toString()) as Record<string, unknown>))
  ws.on('close', (code) => (session.closeCode = code))
  ws.on('error', () => undefined)
  return session
}
