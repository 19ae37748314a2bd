/**
 * A throwaway haproxy load balancer in front of servers of a test: real haproxy from Debian's
 * `haproxy` package (scripts/setup.sh installs it), our own foreground child process with its
 * own config, on 127.0.0.1 and a free port (or, for the namespace lab, on a given address and
 * port inside a network namespace: `listen`, `netns`). It is not a production haproxy config
 * (no TLS, no access logs, test addresses only), but every setting below is one a real deployment
 * in front of controller replicas needs, and says why.
 *
 *     const skip = haproxySkipReason()
 *     describe.skipIf(skip !== undefined)(`… ${skip ? `(skipped: ${skip})` : ''}`, () => {
 *       let lb: HaproxyServer
 *       beforeAll(async () => {
 *         lb = await startHaproxy({backends: [{name: 'r1', host: '127.0.0.1', port: p1}, …]})
 *       })
 *       afterAll(() => lb?.stop())
 *       it('…', async () => { await fetch(`${lb.url}/readyz`) … })
 *     })
 *
 * Every wait here is on an event, never a sleep: haproxy writes a line to stderr for every
 * health-check result that differs from the last and every change of a server's state (the
 * config asks for it: `option log-health-checks`, a `log stderr` target in the backend), and
 * each line makes the harness ask the runtime API (`show stat`) again; exits are the child's
 * 'close' event.
 *
 * What start does:
 *  1. Writes haproxy.cfg into a fresh temp directory (mode 0700): see renderConfig() for each
 *     setting and its reason. The runtime API ("stats socket") lives in the same directory.
 *  2. Runs `haproxy -f haproxy.cfg -db` (foreground, no daemon, no master process): the pid we
 *     hold is haproxy itself. A lost race for the port makes haproxy exit at once: try another,
 *     3 times.
 *  3. Waits, bounded by readyTimeoutMs, until haproxy has finished the first health check of
 *     every backend (its runtime API no longer says INI for any of them), so a test starts with
 *     haproxy's view of the backends settled, not with the optimistic "UP" it assumes at start.
 *     Each first check is a change from INI, so each prints a line: the wake-ups of this wait.
 *
 * stop() sends SIGTERM (haproxy's hard stop: it closes every connection at once), waits for the
 * exit (SIGKILL if it has not exited after 2 s, a safety net), and removes the directory; it
 * never throws, so an afterAll after a failed test still cleans up. An exit hook SIGKILLs the pid
 * and removes the directory if the worker exits without afterAll.
 *
 * Missing binary: tests skip with the reason (as the PostgreSQL tests do), except under CI=true,
 * where haproxySkipReason() does not skip and startHaproxy() throws, so a CI machine without
 * haproxy fails loudly instead of passing with nothing tested.
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {freePort, isExecutable, spawnChild, waitFor, type Child} from './process.ts'

export interface HaproxyBackend {
  /** The server's name in haproxy (stats, runtime API); letters, digits, `-`, `_`, `.`. */
  readonly name: string
  readonly host: string
  readonly port: number
}

export interface StartHaproxyOptions {
  readonly backends: readonly HaproxyBackend[]
  /**
   * 'leastconn' (default): a new connection goes to the server with the fewest open ones, round
   * robin among equals. Controller traffic is mostly long-lived WebSockets (one netmap session
   * per node and network, admin event streams): after a failover every node sits on the
   * survivor, and leastconn sends the next connections to the replica that comes back instead
   * of splitting them half and half and keeping the imbalance. Idle, it alternates like
   * roundrobin. 'roundrobin': strict turns, whatever is open.
   */
  readonly balance?: 'leastconn' | 'roundrobin'
  /** Health checks: GET this path, 2xx = up. Default '/readyz' (the controller's readiness). */
  readonly checkPath?: string
  /** Between health checks, in ms. Default 200: with fall 2, a dead backend is out in ≈ 0.4 s. */
  readonly checkIntervalMs?: number
  /** Failed checks in a row to mark a server down. Default 2 (one lost check is not a verdict). */
  readonly fall?: number
  /** Passed checks in a row to mark it up again. Default 1: a restarted replica is back at once. */
  readonly rise?: number
  /** Timeouts in ms; defaults in renderConfig(). Tests shorten them to prove which one applies. */
  readonly timeouts?: Partial<HaproxyTimeouts>
  /** Bound on step 3 (first health check of every backend), in ms. Default 10 000. */
  readonly readyTimeoutMs?: number
  /** haproxy's maxconn (global and frontend). Default 2000. */
  readonly maxconn?: number
  /**
   * Where the frontend listens. Default 127.0.0.1 and a free port. A fixed port is taken as
   * given (no retry on another one): the namespace lab puts haproxy on the controller's URL.
   */
  readonly listen?: {readonly host: string; readonly port?: number}
  /**
   * Run haproxy inside this network namespace (`ip netns exec NS haproxy …`, which execs: the
   * pid is still haproxy's). Needs root. The runtime API is a unix socket in the temp
   * directory, so the test reaches it from any namespace.
   */
  readonly netns?: string
}

export interface HaproxyTimeouts {
  /** TCP connect to a backend. */
  connect: number
  /** Client inactivity during an HTTP exchange. */
  client: number
  /** Server inactivity during an HTTP exchange (a response that takes longer is a 504). */
  server: number
  /** Inactivity of a WebSocket (any upgraded connection), both ways; replaces client/server. */
  tunnel: number
  /** A client that opened a connection must send a complete request head within this. */
  httpRequest: number
  /** An idle keep-alive client connection between two requests. */
  httpKeepAlive: number
  /** A health check's reply (its connect is bounded by min(connect, inter)). */
  check: number
}

export interface HaproxyServerState {
  readonly name: string
  /** haproxy's word: 'UP', 'DOWN', 'MAINT', 'DRAIN', 'UP 1/2' (going down), 'DOWN 1/1' (going up)… */
  readonly status: string
  /** The last health check: 'L7OK', 'L7STS' (bad status), 'L4CON' (refused), 'L4TOUT', 'INI'… */
  readonly checkStatus: string
  /** Connections open to this server now. */
  readonly current: number
  /** Connections (sessions) it has been given so far. */
  readonly total: number
  /** Connect attempts to it that failed and were retried (on it or, redispatched, elsewhere). */
  readonly retries: number
  /** Of those, the ones sent to another server instead. */
  readonly redispatches: number
}

export interface HaproxyServer {
  /** http://HOST:PORT (127.0.0.1 unless `listen` said) — the load balancer's frontend. */
  readonly url: string
  readonly port: number
  readonly dir: string
  readonly pid: number
  /** What haproxy thinks of each backend now (its runtime API, `show stat`). */
  servers(): Promise<HaproxyServerState[]>
  /**
   * Resolves when haproxy's status for `name` is exactly `status`, with the time it took; asks
   * now and again after each line haproxy prints (every state change prints one); rejects after
   * timeoutMs with the last state seen.
   */
  waitForServer(name: string, status: 'UP' | 'DOWN' | 'MAINT' | 'DRAIN', timeoutMs: number): Promise<number>
  /**
   * Points a backend at another address (a replica restarted on a new port), through the
   * runtime API; health checks follow.
   */
  setBackend(name: string, address: {host: string; port: number}): Promise<void>
  /**
   * 'drain': no new connections, open ones stay (steer new sessions to the other replicas);
   * 'maint': out, and its open connections are closed (measured: at once, WebSockets
   * included); 'ready': back in after its next passed check.
   */
  setBackendState(name: string, state: 'ready' | 'drain' | 'maint'): Promise<void>
  /** One runtime API command (management guide, "Unix Socket commands"); returns its answer. */
  command(cmd: string): Promise<string>
  /** SIGTERM, its exit (SIGKILL after 2 s), remove the directory. Never throws; safe to call twice. */
  stop(): Promise<void>
  /** What start and stop took, in ms (for the report, not for assertions). */
  readonly timings: {startMs: number; firstChecksMs: number; stopMs?: number}
}

/** haproxy: MESH_TEST_HAPROXY, else on PATH, else Debian's /usr/sbin/haproxy (off a user's PATH). */
export function findHaproxy(): string | undefined {
  const candidates: string[] = []
  if (process.env.MESH_TEST_HAPROXY) candidates.push(process.env.MESH_TEST_HAPROXY)
  candidates.push(
    ...(process.env.PATH ?? '')
      .split(path.delimiter)
      .filter(Boolean)
      .map((d) => path.join(d, 'haproxy')),
  )
  candidates.push('/usr/sbin/haproxy')
  return candidates.find(isExecutable)
}

const MISSING = 'haproxy not found (apt-get install haproxy; scripts/setup.sh does it)'

/**
 * Why the haproxy tests cannot run here, or undefined when they can. Under CI=true it is
 * always undefined: the tests run and startHaproxy() fails with the reason.
 */
export function haproxySkipReason(): string | undefined {
  if (process.env.CI === 'true' || process.env.CI === '1') return undefined
  if (process.platform !== 'linux') return 'Linux only'
  return findHaproxy() === undefined ? MISSING : undefined
}

const BACKEND = 'controllers'
const NAME = /^[A-Za-z0-9._-]+$/

const DEFAULT_TIMEOUTS: HaproxyTimeouts = {
  connect: 1000,
  client: 30_000,
  server: 30_000,
  tunnel: 3_600_000,
  httpRequest: 5000,
  httpKeepAlive: 5000,
  check: 1000,
}

/**
 * The config, one reason per setting. Exported for tests and for the report.
 *
 * Why no `option http-server-close` or `option http-tunnel`: haproxy 2.x parses HTTP into its
 * internal HTX form and handles `Connection: Upgrade` itself. It forwards the 101 and from then
 * on relays bytes both ways under `timeout tunnel`; keep-alive on both sides is the default and
 * each request is balanced on its own (no `prefer-last-server`), so nothing more is needed for
 * WebSockets, and http-server-close would only cost a TCP connect per request to the replicas.
 */
export function renderConfig(opts: {
  port: number
  /** The frontend's address; default 127.0.0.1. */
  host?: string
  adminSocket: string
  backends: readonly HaproxyBackend[]
  balance: 'leastconn' | 'roundrobin'
  checkPath: string
  checkIntervalMs: number
  fall: number
  rise: number
  timeouts: HaproxyTimeouts
  maxconn: number
}): string {
  const t = opts.timeouts
  return [
    'global',
    // Bounded: haproxy sizes itself from `ulimit -n` otherwise, and root's may be huge.
    `  maxconn ${opts.maxconn}`,
    // One thread: the machines running these tests are small and shared; loopback traffic of
    // a test is nowhere near one thread's capacity.
    '  nbthread 1',
    // The runtime API: state of the servers (readiness wait, failover assertions) and
    // set server … for tests. Only the owner (we) may use it.
    `  stats socket ${opts.adminSocket} mode 600 level admin`,
    // No global `log` line: nothing of a test reads access logs (a frontend logs traffic to
    // the global targets), and -db would write them to stderr. The backend has its own below.
    '',
    'defaults',
    '  mode http',
    `  timeout connect ${t.connect}ms`,
    `  timeout client ${t.client}ms`,
    `  timeout server ${t.server}ms`,
    // After a 101 Switching Protocols both directions count as one tunnel; the controller pings
    // its WebSockets (30 s by default), so an idle-but-alive session never reaches this.
    `  timeout tunnel ${t.tunnel}ms`,
    `  timeout http-request ${t.httpRequest}ms`,
    `  timeout http-keep-alive ${t.httpKeepAlive}ms`,
    `  timeout check ${t.check}ms`,
    // Half-closed connections do not linger for the whole tunnel timeout.
    '  timeout client-fin 1s',
    '  timeout server-fin 1s',
    // A connect refused or timed out (a replica just killed, not yet marked down) is retried,
    // and each retry goes to another server (redispatch 1 = on every retry, not only the
    // last). Only connect failures are retried (haproxy's default retry-on): a request that
    // reached a replica that then died is not replayed, as a POST may have been applied.
    '  retries 3',
    '  option redispatch 1',
    '',
    'frontend mesh',
    `  bind ${opts.host ?? '127.0.0.1'}:${opts.port}`,
    `  maxconn ${opts.maxconn}`,
    // X-Forwarded-For: the client's address, for a controller that trusts this proxy. Any
    // X-Forwarded-For the client sent is dropped first, so the header the replicas see has
    // exactly one address, ours to vouch for (haproxy would otherwise append to a forged one).
    '  http-request del-header X-Forwarded-For',
    '  option forwardfor',
    `  default_backend ${BACKEND}`,
    '',
    `backend ${BACKEND}`,
    `  balance ${opts.balance}`,
    `  option httpchk GET ${opts.checkPath}`,
    // Health-check results that differ from the last (the first one, from INI, always does) and
    // server state changes, one line each on stderr: the events the harness waits on instead of
    // polling the runtime API. Only health and state: traffic is logged by the frontend, which
    // has no target. (haproxy in the foreground also echoes them as [WARNING] lines: twice is
    // harmless, each line only makes the harness look again.)
    '  log stderr format raw local0',
    '  option log-health-checks',
    '  http-check expect status 200',
    // A server marked down (checks failing, or set to maint) has its open connections closed
    // at once, WebSockets included, so its nodes reconnect through us to a live replica
    // instead of waiting on a socket to a replica that hangs without closing it.
    '  default-server on-marked-down shutdown-sessions',
    // inter: the check period while up; fastinter while a state change is in progress;
    // downinter while down (a restarted replica is seen within one period).
    `  default-server inter ${opts.checkIntervalMs}ms fastinter ${opts.checkIntervalMs}ms downinter ${opts.checkIntervalMs}ms fall ${opts.fall} rise ${opts.rise}`,
    ...opts.backends.map((b) => `  server ${b.name} ${b.host}:${b.port} check`),
    '',
  ].join('\n')
}

/** One runtime API command over the unix socket; haproxy answers and closes (no `prompt`). */
function adminCommand(socketPath: string, cmd: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath)
    let out = ''
    const timer = setTimeout(() => {
      sock.destroy()
      reject(new Error(`haproxy runtime API: no answer to ${JSON.stringify(cmd)} in ${timeoutMs} ms`))
    }, timeoutMs)
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => (out += d))
    sock.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    sock.once('close', () => {
      clearTimeout(timer)
      resolve(out)
    })
    sock.end(`${cmd}\n`)
  })
}

/** `show stat` CSV → the rows of our backend's servers. */
function parseServers(csv: string): HaproxyServerState[] {
  const lines = csv.split('\n').filter((l) => l.length > 0)
  const header = (lines[0] ?? '').replace(/^# /, '').split(',')
  const col = (name: string) => header.indexOf(name)
  const [px, sv, st, cs, cur, tot, wretr, wredis] = [
    'pxname',
    'svname',
    'status',
    'check_status',
    'scur',
    'stot',
    'wretr',
    'wredis',
  ].map(col)
  if ([px, sv, st, cs, cur, tot, wretr, wredis].some((i) => i === undefined || i < 0))
    throw new Error(`haproxy runtime API: unexpected show stat answer: ${csv.slice(0, 300)}`)
  const out: HaproxyServerState[] = []
  for (const line of lines.slice(1)) {
    const f = line.split(',')
    if (f[px!] !== BACKEND || f[sv!] === 'BACKEND' || f[sv!] === 'FRONTEND') continue
    out.push({
      name: f[sv!] ?? '',
      status: f[st!] ?? '',
      // A check in progress reads '* L7OK'; the star says nothing about the result.
      checkStatus: (f[cs!] ?? '').replace(/^\* /, ''),
      current: Number(f[cur!] ?? 0),
      total: Number(f[tot!] ?? 0),
      retries: Number(f[wretr!] ?? 0),
      redispatches: Number(f[wredis!] ?? 0),
    })
  }
  return out
}

/** Starts haproxy in front of `backends`; see the module comment. Throws with haproxy's words. */
export async function startHaproxy(opts: StartHaproxyOptions): Promise<HaproxyServer> {
  const bin = findHaproxy()
  if (bin === undefined) throw new Error(MISSING)
  if (opts.backends.length === 0) throw new Error('startHaproxy: no backends')
  for (const b of opts.backends)
    if (!NAME.test(b.name))
      throw new Error(`startHaproxy: backend name ${JSON.stringify(b.name)} is not a haproxy name`)

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-haproxy-'))
  fs.chmodSync(dir, 0o700)
  const cfgFile = path.join(dir, 'haproxy.cfg')
  const adminSocket = path.join(dir, 'admin.sock')
  let child: Child | undefined
  let cleaned = false

  const cleanupSync = () => {
    if (cleaned) return
    cleaned = true
    child?.signalSync('SIGKILL')
    fs.rmSync(dir, {recursive: true, force: true})
  }
  // Covers a worker that exits without running afterAll (a crash of the test runner itself).
  process.once('exit', cleanupSync)
  // SIGTERM is haproxy's hard stop; 2 s bounds one that ignores it (never seen).
  const stopChild = () => child?.stop('SIGTERM', 2000)

  try {
    const t0 = performance.now()
    const balance = opts.balance ?? 'leastconn'
    const checkIntervalMs = opts.checkIntervalMs ?? 200
    const timeouts = {...DEFAULT_TIMEOUTS, ...opts.timeouts}
    const host = opts.listen?.host ?? '127.0.0.1'
    if (!net.isIP(host)) throw new Error(`startHaproxy: ${host} is not an IP address`)
    if (opts.netns !== undefined && !/^[A-Za-z0-9._-]+$/.test(opts.netns))
      throw new Error(`startHaproxy: ${JSON.stringify(opts.netns)} is not a namespace name`)
    const servers = () => adminCommand(adminSocket, 'show stat').then(parseServers)
    let port = 0
    let startMs = 0
    let last: HaproxyServerState[] = []
    // 2. and 3. Start, and wait for the first health check of every backend. haproxy binds (and
    //    fails, and exits) before its event loop runs, and the loop runs the checks, so each
    //    wake-up is a line (a check result) or the exit; "the runtime API answers" = "it runs
    //    with this config". A check before the runtime API listens is a refused connect: not yet.
    for (let attempt = 1; ; attempt++) {
      port = opts.listen?.port ?? (await freePort())
      fs.writeFileSync(
        cfgFile,
        renderConfig({
          port,
          host,
          adminSocket,
          backends: opts.backends,
          balance,
          checkPath: opts.checkPath ?? '/readyz',
          checkIntervalMs,
          fall: opts.fall ?? 2,
          rise: opts.rise ?? 1,
          timeouts,
          maxconn: opts.maxconn ?? 2000,
        }),
      )
      const argv = ['-f', cfgFile, '-db']
      const c =
        opts.netns === undefined
          ? spawnChild(bin, argv, {cwd: dir})
          : spawnChild('ip', ['netns', 'exec', opts.netns, bin, ...argv], {cwd: dir})
      child = c
      const outcome = await waitFor({
        what: 'haproxy: first health checks of every backend',
        on: (wake) => c.onEvent(wake),
        check: async () => {
          if (c.hasExited()) return 'exited' as const
          last = await servers()
          if (startMs === 0) startMs = performance.now() - t0
          const done =
            last.length === opts.backends.length &&
            last.every((s) => s.checkStatus !== 'INI' && s.checkStatus !== '')
          return done ? ('ready' as const) : undefined
        },
        timeoutMs: opts.readyTimeoutMs ?? 10_000,
        lastSeen: () => `${JSON.stringify(last)}\n${c.output()}`,
      })
      if (outcome === 'ready') break
      const exit = await c.exited
      if (exit.error) throw new Error(`cannot run ${bin}: ${exit.error.message}`)
      if (
        attempt >= 3 ||
        opts.listen?.port !== undefined ||
        !/cannot bind|Address already in use/i.test(c.output())
      )
        throw new Error(`haproxy did not start (exit ${exit.code ?? exit.signal}):\n${c.output()}`)
    }
    const firstChecksMs = performance.now() - t0 - startMs
    const running = child!

    const timings: HaproxyServer['timings'] = {startMs, firstChecksMs}
    const serverCmd = (name: string, rest: string) => {
      if (!NAME.test(name)) throw new Error(`not a haproxy name: ${JSON.stringify(name)}`)
      return adminCommand(adminSocket, `set server ${BACKEND}/${name} ${rest}`).then((answer) => {
        // Success is an empty answer or "IP changed from …"; anything else is haproxy's complaint.
        if (answer.trim() !== '' && !/changed from|no need to change/i.test(answer))
          throw new Error(`haproxy: set server ${name} ${rest}: ${answer.trim()}`)
      })
    }
    return {
      url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
      port,
      dir,
      pid: running.pid!,
      timings,
      servers,
      command: (cmd) => adminCommand(adminSocket, cmd),
      async waitForServer(name, status, timeoutMs) {
        const t = performance.now()
        let seen: HaproxyServerState | undefined
        // Subscribed before the first look, so a change between the look and the subscription
        // still wakes us. Lines about other servers wake us too: one show stat each, harmless.
        const outcome = await waitFor({
          what: `haproxy: ${name} ${status}`,
          on: (wake) => running.onEvent(wake),
          check: async () => {
            if (running.hasExited()) return 'exited' as const
            seen = (await servers()).find((s) => s.name === name)
            return seen?.status === status ? ('seen' as const) : undefined
          },
          timeoutMs,
          lastSeen: () => JSON.stringify(seen),
        })
        if (outcome === 'exited')
          throw new Error(`haproxy exited while waiting for ${name} ${status}:\n${running.output()}`)
        return performance.now() - t
      },
      async setBackend(name, address) {
        if (!net.isIP(address.host)) throw new Error(`setBackend: ${address.host} is not an IP address`)
        await serverCmd(name, `addr ${address.host} port ${address.port}`)
      },
      async setBackendState(name, state) {
        await serverCmd(name, `state ${state}`)
      },
      async stop() {
        if (cleaned) return
        const t = performance.now()
        await stopChild()
        cleanupSync()
        process.removeListener('exit', cleanupSync)
        timings.stopMs = performance.now() - t
      },
    }
  } catch (err) {
    await stopChild()
    cleanupSync()
    process.removeListener('exit', cleanupSync)
    throw err
  }
}
