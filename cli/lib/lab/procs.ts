/**
 * Long-running lab processes (controller, meshd, forwarder, iperf3 servers): started detached
 * inside a namespace with their output in a log file, recorded by pid and start time so that a
 * later `mesh lab down` kills exactly them, never a process that reused the pid.
 */
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import {sleep} from './sh.js'

export interface ProcRecord {
  /** What it is, e.g. `controller`, `node1/meshd`. */
  name: string
  pid: number
  /** Field 22 of /proc/PID/stat at start: tells our process apart from a later one with its pid. */
  startTime: string
  ns: string
  log: string
  argv: string[]
}

/** The start time of a live process, or undefined when it is gone (or a zombie). */
export function procStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (rest[0] === 'Z' || rest[0] === 'X') return undefined
    return rest[19]
  } catch {
    return undefined
  }
}

/** True while the recorded process (the same one, not a pid reuse) is alive. */
export const isAlive = (p: Pick<ProcRecord, 'pid' | 'startTime'>): boolean =>
  procStartTime(p.pid) === p.startTime

/**
 * Starts `argv` inside namespace `ns`, detached (it outlives the `mesh lab up` that started it),
 * stdout and stderr appended to `log`. `ip netns exec` execs the command, so the pid we get is
 * the command's own.
 */
export function startProc(opts: {
  name: string
  ns: string
  argv: string[]
  log: string
  env?: NodeJS.ProcessEnv
}): ProcRecord {
  const fd = fs.openSync(opts.log, 'a', 0o600)
  try {
    const child = spawn('ip', ['netns', 'exec', opts.ns, ...opts.argv], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: opts.env ?? process.env,
    })
    child.unref()
    // Reap it if it exits while we are still running, so it does not linger as a zombie.
    child.on('error', () => undefined)
    if (child.pid === undefined) throw new Error(`could not start ${opts.argv[0]} in ${opts.ns}`)
    const startTime = procStartTime(child.pid) ?? ''
    return {name: opts.name, pid: child.pid, startTime, ns: opts.ns, log: opts.log, argv: opts.argv}
  } finally {
    fs.closeSync(fd)
  }
}

/** Sends `signal` to the recorded process if it is still the one we started. */
export function signalProc(p: Pick<ProcRecord, 'pid' | 'startTime'>, signal: NodeJS.Signals): boolean {
  if (!isAlive(p)) return false
  try {
    process.kill(p.pid, signal)
    return true
  } catch {
    return false
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone (bounded). */
export async function stopProc(p: Pick<ProcRecord, 'pid' | 'startTime'>, graceMs = 3000): Promise<void> {
  if (!signalProc(p, 'SIGTERM')) return
  const deadline = Date.now() + graceMs
  while (Date.now() < deadline && isAlive(p)) await sleep(50)
  if (signalProc(p, 'SIGKILL')) {
    const killDeadline = Date.now() + 2000
    while (Date.now() < killDeadline && isAlive(p)) await sleep(20)
  }
}

/** Synchronous stop for exit handlers: SIGTERM, a short busy wait, then SIGKILL. */
export function stopProcSync(p: Pick<ProcRecord, 'pid' | 'startTime'>, graceMs = 1000): void {
  if (!signalProc(p, 'SIGTERM')) return
  const deadline = Date.now() + graceMs
  const tick = new Int32Array(new SharedArrayBuffer(4))
  while (Date.now() < deadline && isAlive(p)) Atomics.wait(tick, 0, 0, 20)
  signalProc(p, 'SIGKILL')
}

/** The last `lines` lines of a log file, for error messages. */
export function tail(file: string, lines = 20): string {
  try {
    return fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .slice(-lines - 1)
      .join('\n')
  } catch {
    return '(no log)'
  }
}
