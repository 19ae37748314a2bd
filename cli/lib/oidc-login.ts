/**
 * `mesh login --oidc`: the CLI's half of an OpenID Connect login (issue 10). The controller is
 * the OpenID client and checks everything (state, nonce, PKCE, the ID token); the CLI only
 *  - code flow: listens on a loopback callback (127.0.0.1, a random port; RFC 8252 §7.3), shows
 *    (and on a terminal opens) the provider's URL, and hands the URL the browser comes back
 *    with to the controller;
 *  - device flow (RFC 8628): shows the verification URL and the user code, and polls the
 *    controller at the interval it says (slow_down raises it), until done or expired.
 * Either ends with the tokens stored as a password login stores them. With a user invite code
 * (`mesh signup INVITE --oidc`) the login makes the account the invite admits.
 */
import {spawn} from 'node:child_process'
import http from 'node:http'
import type {AddressInfo} from 'node:net'
import {setTimeout as sleep} from 'node:timers/promises'
import {MeshError, isMeshError} from '../../shared/errors.js'
import type {LoginResponse} from '../../shared/protocol/control-api.js'
import {terminalText} from '../../shared/text.js'
import {ControllerClient} from './controller-client.js'
import {type LoginResult, storeLogin} from './session.js'

/** A browser login waits this long at most for the callback (the controller's flow lives 10 min). */
const CALLBACK_WAIT_MS = 10 * 60_000
/** Device polls at most this many times (30 min at the 5 s default interval, more when slowed). */
const MAX_POLLS = 400
const CALLBACK_PATH = '/callback'
/** Poll failures that pass: the device flow goes on polling after them. */
const PASSING: ReadonlySet<string> = new Set(['CONTROLLER_UNREACHABLE', 'OIDC_PROVIDER_UNREACHABLE'])

/** A URL or code from the controller (someone else's text) made safe for a terminal. */
const safe = (text: string): string => terminalText(text, {max: 4000})

export interface OidcLoginOptions {
  controller: string
  issuer?: string | undefined
  /** Human lines (the URL, the code): stderr. */
  say: (line: string) => void
  /** With --json: the device prompt as one JSON line on stdout before the result. */
  json?: ((value: unknown) => void) | undefined
  /** Try to open the URL in a browser (a terminal, and not --no-browser). */
  openBrowser: boolean
  /** A user invite code (uinv_...): the login makes a new account with it. */
  invite?: string | undefined
}

/** The code flow with PKCE through a loopback callback. */
export async function oidcCodeLogin(opts: OidcLoginOptions): Promise<LoginResult> {
  const api = new ControllerClient({url: opts.controller})
  const callback = await listenForCallback()
  try {
    const start = await api.oidcStart({
      ...(opts.issuer === undefined ? {} : {issuer: opts.issuer}),
      ...(opts.invite === undefined ? {} : {invite: opts.invite}),
      redirectUri: callback.redirectUri,
    })
    const url = start.authorizationUrl
    opts.json?.({authorizationUrl: url, expiresAt: start.expiresAt})
    opts.say(`Open this URL in a browser to log in with ${start.issuer}:\n\n  ${safe(url)}\n`)
    if (opts.openBrowser) openInBrowser(url)
    const deadline = Math.min(Date.parse(start.expiresAt) - Date.now(), CALLBACK_WAIT_MS)
    const callbackUrl = await callback.wait(deadline)
    const reply = await api.oidcFinish({flowId: start.flowId, callbackUrl})
    return storeLogin(api.url, reply)
  } finally {
    callback.close()
  }
}

/** The device authorization flow: a URL and a code to enter on any other device. */
export async function oidcDeviceLogin(opts: OidcLoginOptions): Promise<LoginResult> {
  const api = new ControllerClient({url: opts.controller})
  const start = await api.oidcDevice({
    ...(opts.issuer === undefined ? {} : {issuer: opts.issuer}),
    ...(opts.invite === undefined ? {} : {invite: opts.invite}),
  })
  if (opts.json) {
    opts.json({
      verificationUri: start.verificationUri,
      ...(start.verificationUriComplete ? {verificationUriComplete: start.verificationUriComplete} : {}),
      userCode: start.userCode,
      expiresAt: start.expiresAt,
    })
  }
  opts.say(
    `To log in with ${start.issuer}, open\n\n  ${safe(start.verificationUri)}\n\nand enter the code ${safe(start.userCode)}` +
      (start.verificationUriComplete ? ` (or open ${safe(start.verificationUriComplete)})` : '') +
      '\n',
  )
  let interval = start.interval
  const end = Date.parse(start.expiresAt)
  for (let poll = 0; poll < MAX_POLLS && Date.now() < end; poll++) {
    await sleep(interval * 1000)
    let r
    try {
      r = await api.oidcDevicePoll({flowId: start.flowId})
    } catch (err) {
      // The controller or the provider out of reach for a moment: the code stays valid; poll on.
      if (!isMeshError(err) || !PASSING.has(err.code)) throw err
      opts.say(`${safe(err.message)}; trying again`)
      continue
    }
    if (r.status === 'done') {
      const {status: _s, ...reply} = r
      return storeLogin(api.url, reply as LoginResponse)
    }
    interval = r.interval
  }
  throw new MeshError('OIDC_FLOW_EXPIRED', {message: 'the code was not entered in time'})
}

/**
 * A one-shot HTTP server on 127.0.0.1 and a random port: the first request to /callback that
 * carries `state` or `error` is the browser coming back; it gets a short page and its URL is the
 * result. Anything else is 404.
 */
async function listenForCallback(): Promise<{
  redirectUri: string
  wait: (ms: number) => Promise<string>
  close: () => void
}> {
  let resolve: (url: string) => void = () => undefined
  const got = new Promise<string>((r) => (resolve = r))
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    const isCallback =
      req.method === 'GET' &&
      url.pathname === CALLBACK_PATH &&
      (url.searchParams.has('state') || url.searchParams.has('error'))
    if (!isCallback) {
      res.writeHead(404, {'content-type': 'text/plain'}).end('not found\n')
      return
    }
    res
      .writeHead(200, {'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store'})
      .end(
        '<!doctype html><title>mesh</title><p>Back to the terminal: mesh finishes the login there. You can close this window.</p>\n',
      )
    resolve(`${redirectUri}${url.search}`)
  })
  await new Promise<void>((r, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => r())
  })
  const redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}${CALLBACK_PATH}`
  return {
    redirectUri,
    wait: async (ms) => {
      const ac = new AbortController()
      try {
        return await Promise.race([
          got,
          sleep(Math.max(ms, 0), undefined, {signal: ac.signal}).then(() => {
            throw new MeshError('OIDC_FLOW_EXPIRED', {message: 'the browser did not come back in time'})
          }),
        ])
      } finally {
        ac.abort()
      }
    },
    close: () => {
      server.closeAllConnections()
      server.close()
    },
  }
}

/** Best effort: xdg-open / open / start, detached; a failure only means the URL must be copied. */
function openInBrowser(url: string): void {
  const cmd =
    process.platform === 'darwin'
      ? ['open', url]
      : process.platform === 'win32'
        ? ['cmd', '/c', 'start', '', url]
        : ['xdg-open', url]
  try {
    const child = spawn(cmd[0]!, cmd.slice(1), {detached: true, stdio: 'ignore'})
    child.on('error', () => undefined)
    child.unref()
  } catch {
    // The URL is printed; nothing else to do.
  }
}
