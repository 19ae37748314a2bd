/**
 * A minimal HTTP client for controller tests: never throws on a status, returns the parsed
 * body and the headers. Test-only (controller/testing is not built into dist).
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
