/**
 * Helpers of the end-to-end tests: finding a node's private key in its state dir (whatever the
 * file format), scanning files for secrets, raw requests on meshd's socket, and ping statistics.
 */
import {afterAll, beforeAll, beforeEach} from 'vitest'
import type {Lab} from '../../cli/lib/lab/lab.js'
import type {NatKind} from '../../cli/lib/lab/nat.js'
import {upLab} from '../../cli/lib/lab/up.js'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {runOk} from '../../cli/lib/lab/sh.js'

const KEY_RE = /[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=/g

/** Every file under `dir`, recursively (bounded to 10,000 files). */
export function walkFiles(dir: string): string[] {
  const out: string[] = []
  const stack = [dir]
  while (stack.length > 0 && out.length < 10_000) {
    const d = stack.pop()!
    let entries: fs.Dirent[]
    try {
      entries = fs.readdirSync(d, {withFileTypes: true})
    } catch {
      continue
    }
    for (const e of entries) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) stack.push(p)
      else if (e.isFile()) out.push(p)
    }
  }
  return out
}

/**
 * The private keys stored under `stateDir` whose public key is one of `publicKeys`: every
 * base64 32-byte string in every file is tried with `wg pubkey`, so the test does not depend on
 * how meshd lays out its state.
 */
export async function privateKeysIn(stateDir: string, publicKeys: readonly string[]): Promise<string[]> {
  const candidates = new Set<string>()
  for (const f of walkFiles(stateDir)) {
    const text = fs.readFileSync(f).toString('latin1')
    for (const m of text.matchAll(KEY_RE)) candidates.add(m[0])
  }
  const found: string[] = []
  for (const c of candidates) {
    const pub = (await runOk('wg', ['pubkey'], {input: `${c}\n`, timeoutMs: 5000})).trim()
    if (publicKeys.includes(pub)) found.push(c)
  }
  return found
}

/** The forms a 32-byte key could take in a file: base64, base64url, hex, raw bytes. */
export function keyForms(base64Key: string): Buffer[] {
  const raw = Buffer.from(base64Key, 'base64')
  return [
    Buffer.from(base64Key),
    Buffer.from(raw.toString('base64url')),
    Buffer.from(raw.toString('hex')),
    Buffer.from(raw.toString('hex').toUpperCase()),
    raw,
  ]
}

/** Files (of `files`) that contain any form of any of `keys`. */
export function filesContaining(files: readonly string[], keys: readonly string[]): string[] {
  const forms = keys.flatMap(keyForms)
  return files.filter((f) => {
    let data: Buffer
    try {
      data = fs.readFileSync(f)
    } catch {
      return false
    }
    return forms.some((form) => data.includes(form))
  })
}

export interface RawReply {
  status: number
  headers: string
  body: string
}

/**
 * Sends `request` bytes as-is on a unix socket and reads the reply until the server closes
 * (bounded). A server may answer 413 and close before the body ends; writing on after that
 * gets EPIPE, and Node then drops the reply it already received. So the last 64 KiB go out in
 * 16 KiB pieces 50 ms apart, and writing stops as soon as a reply arrives. Requests carry
 * `Connection: close`; the socket is never half-closed.
 */
export async function rawRequest(
  socketPath: string,
  request: string | Buffer,
  timeoutMs = 5000,
): Promise<RawReply> {
  const sock = net.connect(socketPath)
  const chunks: Buffer[] = []
  sock.on('data', (d: Buffer) => chunks.push(d))
  sock.on('error', () => undefined)
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()))
  const write = (b: Buffer): Promise<void> =>
    Promise.race([new Promise<void>((resolve) => sock.write(b, () => resolve())), closed])
  const buf = Buffer.from(request)
  const tailFrom = Math.max(0, buf.length - 64 * 1024)
  if (tailFrom > 0) await write(buf.subarray(0, tailFrom))
  for (let off = tailFrom; off < buf.length && chunks.length === 0 && !sock.destroyed; off += 16 * 1024) {
    await write(buf.subarray(off, off + 16 * 1024))
    if (off + 16 * 1024 < buf.length) await new Promise((r) => setTimeout(r, 50))
  }
  await Promise.race([closed, new Promise((r) => setTimeout(r, timeoutMs))])
  sock.destroy()
  const text = Buffer.concat(chunks).toString('utf8')
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text)
  if (!m) throw new Error(`no HTTP reply on ${socketPath}: ${JSON.stringify(text.slice(0, 200))}`)
  const split = text.indexOf('\r\n\r\n')
  return {status: Number(m[1]), headers: text.slice(0, split), body: split >= 0 ? text.slice(split + 4) : ''}
}

/** An HTTP/1.1 request with a JSON body, as raw text (Connection: close). */
export function httpRequest(
  method: string,
  target: string,
  body?: string,
  headers: Record<string, string> = {},
): string {
  const h: Record<string, string> = {host: 'meshd', connection: 'close', ...headers}
  if (body !== undefined) {
    h['content-type'] ??= 'application/json'
    h['content-length'] ??= String(Buffer.byteLength(body))
  }
  const lines = Object.entries(h).map(([k, v]) => `${k}: ${v}`)
  return `${method} ${target} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n${body ?? ''}`
}

/** The same with the body in chunked transfer encoding (no Content-Length: only counting stops it). */
export function chunkedRequest(
  method: string,
  target: string,
  body: string,
  headers: Record<string, string> = {},
): string {
  const h: Record<string, string> = {
    host: 'meshd',
    connection: 'close',
    'content-type': 'application/json',
    'transfer-encoding': 'chunked',
    ...headers,
  }
  const lines = Object.entries(h).map(([k, v]) => `${k}: ${v}`)
  let chunks = ''
  for (let i = 0; i < body.length; i += 64 * 1024) {
    const piece = body.slice(i, i + 64 * 1024)
    chunks += `${Buffer.byteLength(piece).toString(16)}\r\n${piece}\r\n`
  }
  return `${method} ${target} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n${chunks}0\r\n\r\n`
}

/** Decodes a body sent with chunked transfer encoding, or returns it unchanged. */
export function dechunk(reply: RawReply): string {
  if (!/transfer-encoding:\s*chunked/i.test(reply.headers)) return reply.body
  let out = ''
  let rest = reply.body
  for (let i = 0; i < 1000; i++) {
    const nl = rest.indexOf('\r\n')
    if (nl < 0) break
    const size = parseInt(rest.slice(0, nl), 16)
    if (!size) break
    out += rest.slice(nl + 2, nl + 2 + size)
    rest = rest.slice(nl + 2 + size + 2)
  }
  return out
}

/** `ping` summary: packets sent and received. */
export function pingStats(output: string): {sent: number; received: number} {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output)
  if (!m) throw new Error(`no ping summary in: ${output.slice(-300)}`)
  return {sent: Number(m[1]), received: Number(m[2])}
}

/** Longest run of consecutive missing icmp_seq numbers in `ping` output (1..count). */
export function longestGap(output: string, count: number): number {
  const seen = new Set([...output.matchAll(/icmp_seq=(\d+)/g)].map((m) => Number(m[1])))
  let longest = 0
  let cur = 0
  for (let i = 1; i <= count; i++) {
    cur = seen.has(i) ? 0 : cur + 1
    longest = Math.max(longest, cur)
  }
  return longest
}

/**
 * Registers a lab's lifecycle on the surrounding `describe`: builds it in beforeAll (then calls
 * `ready`), notes whether any test failed, and tears it down in afterAll — keeping the logs when
 * something failed. A lab half-built when beforeAll fails is torn down too (onCreated), and on
 * process exit (teardownOnExit).
 */
export function useLab(
  opts: {nodes?: number; nat?: NatKind[]; network: string; cidr: string},
  ready: (lab: Lab) => void | Promise<void>,
): void {
  let lab: Lab | undefined
  let failed = false
  beforeAll(async () => {
    const t0 = Date.now()
    lab = (await upLab({...opts, teardownOnExit: true, onCreated: (l) => (lab = l)})).lab
    const what = opts.nat ? `NATs ${opts.nat.join(',')}` : `${opts.nodes} nodes`
    console.log(`[e2e] lab ${lab.prefix} with ${what} up in ${Date.now() - t0} ms`)
    await ready(lab)
  })
  beforeEach(({onTestFailed}) => {
    onTestFailed(() => {
      failed = true
    })
  })
  afterAll(() => {
    if (!lab) return
    const {logs} = lab.teardownSync({keepLogs: failed})
    if (logs) console.log(`[e2e] lab logs kept in ${logs}`)
  })
}
