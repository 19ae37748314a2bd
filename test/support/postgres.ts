/**
 * A throwaway PostgreSQL server for one test file, and a fresh empty database per test: real
 * PostgreSQL from Debian's `postgresql` package (scripts/setup.sh installs it), nothing mocked.
 * It is not a way to run PostgreSQL for anything but tests (trust nothing it sets up).
 *
 *     const skip = postgresSkipReason()
 *     describe.skipIf(skip !== undefined)(`… ${skip ? `(skipped: ${skip})` : ''}`, () => {
 *       let pg: PostgresServer
 *       beforeAll(async () => { pg = await startPostgres() })
 *       afterAll(() => pg?.stop())
 *       it('…', async () => { const url = await pg.createDatabase(); … })
 *     })
 *
 * What start does:
 *  1. initdb into a fresh temp directory (mode 0700, owned by the server's user), UTF-8 with
 *     ICU's en-US collation by default: what a production server is likely to have, not "C",
 *     so a query that silently relies on byte order for text (ids compared with <) fails here.
 *     A random password with scram-sha-256: pg's real authentication path, and other local
 *     users cannot reach the server for the seconds it lives.
 *  2. Runs `postgres -D …` as our foreground child on 127.0.0.1 and a free port, unix socket in
 *     the same temp directory, fsync/synchronous_commit/full_page_writes off: durability across
 *     an OS crash means nothing for a server that is deleted after the file, and they cost most
 *     of a test's time. Ready is the server's own log line "database system is ready to accept
 *     connections" on stderr (an event; `pg_ctl start -w` would poll postmaster.pid every 100 ms);
 *     an exit before it (a lost race for the port) is read from its words: try another, 3 times.
 *  3. PostgreSQL refuses to run as root. When the tests run as root (they do here, and in CI),
 *     initdb and the server run as the `postgres` system user the package creates (`nobody`
 *     when it is missing), through spawn's uid/gid; otherwise as the current user.
 *
 * stop() sends SIGQUIT, PostgreSQL's immediate shutdown (no shutdown checkpoint: the data is
 * thrown away; the postmaster ends its backends before it exits), waits for the exit (SIGKILL
 * after 10 s, a safety net) and then removes the directory; it never throws, so an afterAll
 * after a failed test still cleans up. An exit hook sends SIGQUIT and removes the directory if
 * the worker exits without afterAll.
 *
 * Missing binaries: tests skip with the reason (as the namespace-lab tests do when wireguard-go
 * is missing), except under CI=true, where postgresSkipReason() does not skip and startPostgres()
 * throws, so a CI machine without PostgreSQL fails loudly instead of passing with nothing tested.
 */
import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
// './process.ts', not '.js': benchmarks load this file with plain Node (type stripping), which does not map .js to .ts.
import {freePort, isExecutable, spawnChild, waitFor, type Child} from './process.ts'

export interface PostgresServer {
  /** postgres://postgres:…@127.0.0.1:PORT/postgres — the maintenance database; tests use createDatabase(). */
  readonly url: string
  readonly port: number
  readonly dataDir: string
  /** Creates an empty database with a unique name and returns its URL. */
  createDatabase(): Promise<string>
  /** Stops the server (immediate) and removes its directory. Never throws; safe to call twice. */
  stop(): Promise<void>
  /** What start and stop took, in ms (for the report, not for assertions). */
  readonly timings: {initdbMs: number; startMs: number; createDatabaseMs: number[]; stopMs?: number}
}

export interface StartPostgresOptions {
  /** ICU collation of the cluster's databases; 'C' for byte order. Default 'en-US'. */
  collation?: 'en-US' | 'C'
  /** Extra postgresql.conf lines (`name = value`), for tests. */
  settings?: Record<string, string | number>
}

const DEBIAN_ROOT = '/usr/lib/postgresql'

/**
 * The directory with initdb, pg_ctl and postgres: MESH_TEST_PG_BINDIR, else the newest major
 * version under /usr/lib/postgresql (Debian keeps the server binaries off PATH), else the one on
 * PATH; undefined when there is none.
 */
export function findPostgresBinDir(): string | undefined {
  const candidates: string[] = []
  if (process.env.MESH_TEST_PG_BINDIR) candidates.push(process.env.MESH_TEST_PG_BINDIR)
  try {
    const majors = fs
      .readdirSync(DEBIAN_ROOT)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a))
    candidates.push(...majors.map((v) => path.join(DEBIAN_ROOT, v, 'bin')))
  } catch {
    // no Debian PostgreSQL
  }
  candidates.push(...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean))
  return candidates.find((dir) =>
    ['initdb', 'pg_ctl', 'postgres'].every((b) => isExecutable(path.join(dir, b))),
  )
}

const MISSING = 'PostgreSQL server binaries not found (apt-get install postgresql; scripts/setup.sh does it)'

/**
 * Why the PostgreSQL tests cannot run here, or undefined when they can. Under CI=true it is
 * always undefined: the tests run and startPostgres() fails with the reason.
 */
export function postgresSkipReason(): string | undefined {
  if (process.env.CI === 'true' || process.env.CI === '1') return undefined
  if (process.platform !== 'linux') return 'Linux only'
  return findPostgresBinDir() === undefined ? MISSING : undefined
}

/** uid/gid to run PostgreSQL as: the current user, or a system user when we are root. */
function serverUser(): {uid: number; gid: number; name: string} | undefined {
  if (process.getuid?.() !== 0) return undefined
  const passwd = fs.readFileSync('/etc/passwd', 'utf8').split('\n')
  for (const name of ['postgres', 'nobody']) {
    const f = passwd.find((l) => l.startsWith(`${name}:`))?.split(':')
    if (f && f[2] && f[3]) return {name, uid: Number(f[2]), gid: Number(f[3])}
  }
  throw new Error('running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as')
}

/**
 * Where the server's directory goes: os.tmpdir(), unless the server runs as another user who
 * cannot pass through one of its parents (a TMPDIR under /root); then /tmp.
 */
function tempBase(user: ReturnType<typeof serverUser>): string {
  const base = os.tmpdir()
  if (!user) return base
  for (let dir = base; ; dir = path.dirname(dir)) {
    if ((fs.statSync(dir).mode & 0o001) === 0) return '/tmp'
    if (dir === path.dirname(dir)) return base
  }
}

interface RunResult {
  code: number | null
  out: string
}

function run(
  bin: string,
  args: string[],
  user: ReturnType<typeof serverUser>,
  timeoutMs: number,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      ...spawnAs(user),
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d))
    child.stderr.on('data', (d: Buffer) => (out += d))
    child.once('error', reject)
    child.once('close', (code) => resolve({code, out}))
  })
}

/** How initdb and the server are spawned: as `user`, in `/`, with a small fixed environment. */
function spawnAs(user: ReturnType<typeof serverUser>) {
  return {
    uid: user?.uid,
    gid: user?.gid,
    // The server's user cannot read root's cwd or HOME; LC_ALL keeps initdb's messages and
    // lc_messages predictable whatever the machine's locale (the ready line below is English).
    cwd: '/',
    env: {PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C.UTF-8', HOME: '/'},
  }
}

/** The postmaster's LOG line once startup is done and it accepts connections. */
const READY = /database system is ready to accept connections/
/** Its lines when another process took the port first. */
const PORT_TAKEN = /could not bind|Address already in use/

/** Starts a throwaway server; see the module comment. Throws with initdb's or the log's words. */
export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PostgresServer> {
  const bindir = findPostgresBinDir()
  if (bindir === undefined) throw new Error(MISSING)
  const user = serverUser()
  const root = fs.mkdtempSync(path.join(tempBase(user), 'mesh-pg-'))
  const dataDir = path.join(root, 'data')
  const password = randomBytes(18).toString('base64url')
  let cleaned = false
  // 3. Only the owner can enter the directory (the socket and the password file live in it).
  if (user) fs.chownSync(root, user.uid, user.gid)
  fs.chmodSync(root, 0o700)
  let server: Child | undefined

  const cleanupSync = () => {
    if (cleaned) return
    cleaned = true
    // SIGQUIT, not SIGKILL: the postmaster takes its backends down with it.
    server?.signalSync('SIGQUIT')
    fs.rmSync(root, {recursive: true, force: true})
  }
  // Covers a worker that exits without running afterAll (a crash of the test runner itself).
  process.once('exit', cleanupSync)
  // SIGQUIT = immediate shutdown; 10 s bounds a postmaster that does not exit (never seen).
  const stopServer = () => server?.stop('SIGQUIT', 10_000)

  try {
    // 1. initdb. --no-sync: nothing of this cluster needs to survive a power cut.
    const pwfile = path.join(root, 'pwfile')
    fs.writeFileSync(pwfile, `${password}\n`, {mode: 0o600})
    if (user) fs.chownSync(pwfile, user.uid, user.gid)
    const collation = opts.collation ?? 'en-US'
    const t0 = performance.now()
    const init = await run(
      path.join(bindir, 'initdb'),
      [
        '-D',
        dataDir,
        '-U',
        'postgres',
        '--pwfile',
        pwfile,
        '--auth',
        'scram-sha-256',
        '-E',
        'UTF8',
        '--locale',
        'C.UTF-8',
        ...(collation === 'C' ? [] : ['--locale-provider', 'icu', '--icu-locale', collation]),
        '--no-sync',
        '--no-instructions',
      ],
      user,
      60_000,
    )
    fs.rmSync(pwfile, {force: true})
    if (init.code !== 0) throw new Error(`initdb failed (exit ${init.code}):\n${init.out.slice(-2000)}`)
    const initdbMs = performance.now() - t0

    // 2. Settings, then start. A lost race for the port fails the start: try another, 3 times.
    const t1 = performance.now()
    let port = 0
    for (let attempt = 1; ; attempt++) {
      port = await freePort()
      const settings: Record<string, string | number> = {
        listen_addresses: "'127.0.0.1'",
        port,
        unix_socket_directories: `'${root}'`,
        fsync: 'off',
        synchronous_commit: 'off',
        full_page_writes: 'off',
        max_connections: 100,
        shared_buffers: "'32MB'",
        ...opts.settings,
      }
      fs.writeFileSync(
        path.join(dataDir, 'postgresql.auto.conf'),
        Object.entries(settings)
          .map(([k, v]) => `${k} = ${v}\n`)
          .join(''),
      )
      const c = spawnChild(path.join(bindir, 'postgres'), ['-D', dataDir], spawnAs(user))
      server = c
      let ready = false
      const stopReading = c.onLine((line) => (ready ||= READY.test(line)))
      const outcome = await waitFor({
        what: 'PostgreSQL ready to accept connections',
        on: (wake) => c.onEvent(wake),
        check: () => (ready ? ('ready' as const) : c.hasExited() ? ('exited' as const) : undefined),
        timeoutMs: 30_000,
        maxChecks: 10_000,
        lastSeen: () => c.output(),
      }).finally(stopReading)
      if (outcome === 'ready') break
      const exit = await c.exited
      if (exit.error) throw new Error(`cannot run postgres: ${exit.error.message}`)
      if (attempt >= 3 || !PORT_TAKEN.test(c.output()))
        throw new Error(`postgres did not start (exit ${exit.code ?? exit.signal}):\n${c.output()}`)
    }
    const startMs = performance.now() - t1

    const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`
    let dbCounter = 0
    const timings: PostgresServer['timings'] = {initdbMs, startMs, createDatabaseMs: []}
    return {
      url,
      port,
      dataDir,
      timings,
      async createDatabase() {
        // Unique per server; the server dies with the file, so nothing is ever dropped.
        const t = performance.now()
        const name = `mesh_test_${++dbCounter}_${randomBytes(4).toString('hex')}`
        const admin = new pg.Client({connectionString: url})
        // A client's 'error' unheard (the server stopping under it) is an uncaught exception.
        admin.on('error', () => undefined)
        await admin.connect()
        try {
          await admin.query(`CREATE DATABASE ${name}`)
        } finally {
          await admin.end()
        }
        timings.createDatabaseMs.push(Math.round(performance.now() - t))
        return url.replace(/\/postgres$/, `/${name}`)
      },
      async stop() {
        if (cleaned) return
        const t = performance.now()
        await stopServer()
        cleanupSync()
        process.removeListener('exit', cleanupSync)
        timings.stopMs = performance.now() - t
      },
    }
  } catch (err) {
    await stopServer()
    cleanupSync()
    process.removeListener('exit', cleanupSync)
    throw err
  }
}
