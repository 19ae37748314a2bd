/**
 * Foreground child processes for test harnesses (haproxy, PostgreSQL): spawn one, wait until it
 * says it is ready, stop it and wait for its exit — each wait on an event (a line it prints, its
 * exit, an answer it gives), never on a sleep. Test-only.
 *
 *     const p = spawnChild(bin, args, {cwd: dir})
 *     const ready = await waitFor({
 *       what: 'haproxy ready',
 *       on: (wake) => p.onEvent(wake),           // every line it prints, and its exit
 *       check: async () => (p.hasExited() ? 'exited' : (await answers()) ? 'ready' : undefined),
 *       timeoutMs: 10_000,
 *     })
 *     …
 *     await p.stop('SIGTERM', 2000)              // the exit; SIGKILL after 2 s as a safety net
 */
import {spawn, type SpawnOptions} from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'

/** How a child ended: its exit code or signal, or the error that kept it from starting. */
export interface ChildExit {
  code: number | null
  signal: NodeJS.Signals | null
  error?: Error
}

export interface Child {
  readonly pid: number | undefined
  /** The last 4000 characters it wrote to stdout and stderr, for error messages. */
  output(): string
  /**
   * Calls `f` for every complete line it writes to stdout or stderr from now on, and once when it
   * exits; returns the unsubscribe. The events a waitFor() re-checks on.
   */
  onEvent(f: () => void): () => void
  /** Calls `f` with every complete line it writes from now on; returns the unsubscribe. */
  onLine(f: (line: string) => void): () => void
  /** Settles once it exited and its output is all read (or it could not be spawned). */
  readonly exited: Promise<ChildExit>
  hasExited(): boolean
  /**
   * Sends `signal` and resolves with the exit. A child still running `graceMs` later gets
   * SIGKILL: a bound for a child that ignores `signal`, not a wait. If even SIGKILL is not
   * followed by an exit within REAP_MS (a process stuck in the kernel), resolves 'unreaped'
   * instead of hanging the test run. Never throws; at once when it had already exited.
   */
  stop(signal: NodeJS.Signals, graceMs: number): Promise<ChildExit | 'unreaped'>
  /** Sends `signal` without waiting: for process 'exit' hooks, which cannot wait. */
  signalSync(signal: NodeJS.Signals): void
}

/** After SIGKILL the kernel ends a process at once; this bound only catches one stuck in the kernel. */
const REAP_MS = 5000
const OUTPUT_KEEP = 4000

/** Spawns `cmd` with stdout and stderr piped and read line by line; see Child. */
export function spawnChild(cmd: string, args: readonly string[], opts: SpawnOptions = {}): Child {
  const c = spawn(cmd, args, {...opts, stdio: ['ignore', 'pipe', 'pipe']})
  let output = ''
  const lineListeners = new Set<(line: string) => void>()
  const eventListeners = new Set<() => void>()
  const emit = (line: string) => {
    for (const f of [...lineListeners]) f(line)
    for (const f of [...eventListeners]) f()
  }
  for (const stream of [c.stdout!, c.stderr!]) {
    // Per stream: a line split over two chunks is one line; stdout and stderr never mix mid-line.
    let partial = ''
    stream.setEncoding('utf8')
    stream.on('data', (d: string) => {
      output = (output + d).slice(-OUTPUT_KEEP)
      const lines = (partial + d).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) emit(line)
    })
    stream.once('end', () => {
      if (partial !== '') emit(partial)
      partial = ''
    })
  }
  // 'close', not 'exit': at 'exit' the last of its output may still be in the pipes, and the
  // error paths read it ("cannot bind"). 'error' alone when the spawn itself failed.
  const exited = new Promise<ChildExit>((resolve) => {
    c.once('close', (code, signal) => resolve({code, signal}))
    c.once('error', (error) => resolve({code: null, signal: null, error}))
  })
  let hasExited = false
  void exited.then(() => {
    hasExited = true
    for (const f of [...eventListeners]) f()
  })
  const signalSync = (signal: NodeJS.Signals) => {
    if (hasExited || c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return
    try {
      process.kill(c.pid, signal)
    } catch {
      // gone meanwhile
    }
  }
  /** `exited`, or 'timeout' after ms; the timer is cleared either way. */
  const exitWithin = (ms: number) => {
    let timer: NodeJS.Timeout | undefined
    const bound = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)))
    return Promise.race([exited, bound]).finally(() => clearTimeout(timer))
  }
  return {
    pid: c.pid,
    output: () => output,
    onLine(f) {
      lineListeners.add(f)
      return () => void lineListeners.delete(f)
    },
    onEvent(f) {
      eventListeners.add(f)
      return () => void eventListeners.delete(f)
    },
    exited,
    hasExited: () => hasExited,
    signalSync,
    async stop(signal, graceMs) {
      if (hasExited) return exited
      signalSync(signal)
      const first = await exitWithin(graceMs)
      if (first !== 'timeout') return first
      signalSync('SIGKILL')
      const second = await exitWithin(REAP_MS)
      return second === 'timeout' ? 'unreaped' : second
    },
  }
}

/**
 * Resolves with the first value other than undefined that `check` returns, evaluated now and
 * again after every event `on` reports (a line the process printed, its exit, a state change):
 * never on a timer. A check that throws counts as undefined (a socket not listening yet); its
 * error is named if nothing comes. Checks never overlap: events during one cause one more check
 * after it. Bounded twice: `timeoutMs` (a deadline, not a wait) and `maxChecks` re-evaluations;
 * either rejects with `what`, the last error and `lastSeen()`.
 */
export function waitFor<T>(opts: {
  what: string
  check: () => Promise<T | undefined> | T | undefined
  on: (wake: () => void) => () => void
  timeoutMs: number
  maxChecks?: number
  lastSeen?: () => string
}): Promise<T> {
  const maxChecks = opts.maxChecks ?? 1000
  return new Promise<T>((resolve, reject) => {
    let done = false
    let running = false
    let again = false
    let checks = 0
    let lastError: unknown
    const fail = (why: string) => {
      const err = lastError instanceof Error ? `; last error: ${lastError.message}` : ''
      const seen = opts.lastSeen ? `; last seen: ${opts.lastSeen()}` : ''
      finish(() => reject(new Error(`${opts.what}: ${why}${err}${seen}`)))
    }
    const run = async () => {
      if (done) return
      if (running) {
        again = true
        return
      }
      running = true
      try {
        do {
          again = false
          if (++checks > maxChecks) return fail(`not after ${maxChecks} checks`)
          let value: T | undefined
          try {
            value = await opts.check()
          } catch (err) {
            lastError = err
            value = undefined
          }
          if (value !== undefined) return finish(() => resolve(value))
        } while (again && !done)
      } finally {
        running = false
      }
    }
    const off = opts.on(() => void run())
    const timer = setTimeout(() => fail(`not within ${opts.timeoutMs} ms`), opts.timeoutMs)
    function finish(settle: () => void) {
      if (done) return
      done = true
      clearTimeout(timer)
      off()
      settle()
    }
    void run()
  })
}

/** A port nobody listens on right now on 127.0.0.1 (a server may still lose a race for it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const {port} = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })
}

/** An executable regular file (a binary a harness may run). */
export function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}
