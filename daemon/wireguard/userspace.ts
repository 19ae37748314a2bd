/**
 * Userspace WireGuard: one supervised `wireguard-go -f IFNAME` per interface (for machines
 * without the kernel module), configured through its UAPI socket by the same `wg` calls as the
 * kernel driver. wireguard-go runs detached from meshd's process group so the data plane outlives
 * a daemon restart; a restarted daemon adopts the running processes and supervises them by
 * polling the link. When one dies the driver reports the interface lost and the daemon re-applies
 * its config, which starts a new one.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {closeSync, existsSync, mkdirSync, openSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {MeshError} from '../../shared/errors.js'
import {WgToolsDriver, type CommandRunner} from './wg-tools.js'

export interface UserspaceDriverOptions {
  /** Where wireguard-go's own output goes (one file per interface). */
  logDir: string
  binary?: string
  /** How often adopted and spawned interfaces are checked; default 2 s. */
  pollMs?: number
  log?: (level: 'info' | 'warn', msg: string, extra?: Record<string, unknown>) => void
  /** Runs ip and wg; default execa (tests enter a network namespace through it). */
  runner?: CommandRunner
}

const UAPI_DIR = '/var/run/wireguard'

export class UserspaceDriver extends WgToolsDriver {
  readonly kind = 'userspace' as const
  private readonly children = new Map<string, ChildProcess>()
  /** Interfaces this driver made or adopted: checked every pollMs, re-created when lost. */
  private readonly supervised = new Set<string>()
  private readonly timer: NodeJS.Timeout
  private polling = false

  constructor(private readonly opts: UserspaceDriverOptions) {
    super(opts.runner)
    this.timer = setInterval(() => void this.poll(), opts.pollMs ?? 2_000)
    this.timer.unref()
  }

  override async apply(desired: Parameters<WgToolsDriver['apply']>[0]): ReturnType<WgToolsDriver['apply']> {
    this.supervised.add(desired.name)
    return super.apply(desired)
  }

  protected async createLink(name: string): Promise<void> {
    mkdirSync(this.opts.logDir, {recursive: true, mode: 0o700})
    const logFile = path.join(this.opts.logDir, `wireguard-go-${name}.log`)
    const fd = openSync(logFile, 'a', 0o600)
    let child: ChildProcess
    try {
      // Its stdout must not be a pipe to meshd: Go dies of SIGPIPE on fd 1/2 once meshd exits.
      child = spawn(this.opts.binary ?? 'wireguard-go', ['-f', name], {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: {...process.env, WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: process.env.LOG_LEVEL ?? 'error'},
      })
    } finally {
      closeSync(fd)
    }
    child.unref()
    let exited: number | null | undefined
    let ready = false
    child.once('error', () => (exited = -1))
    child.once('exit', (code) => {
      exited = code
      if (this.children.get(name) === child) this.children.delete(name)
      // Only a process that came up is "lost". One that dies while starting fails this apply,
      // whose retry is paced; reporting it lost too would re-apply at once, in a tight loop.
      if (ready && this.supervised.has(name)) {
        this.opts.log?.('warn', 'wireguard-go exited', {interface: name, code})
        this.onLost?.(name)
      }
    })
    this.children.set(name, child)
    // Ready when the link and the UAPI socket exist; bounded at 5 s.
    for (let i = 0; i < 100; i++) {
      if (exited !== undefined) break
      if (existsSync(path.join(UAPI_DIR, `${name}.sock`)) && (await this.linkExists(name))) {
        this.opts.log?.('info', 'wireguard-go started', {interface: name, pid: child.pid})
        ready = true
        return
      }
      await sleep(50)
    }
    if (exited === undefined) child.kill('SIGTERM')
    let tail = ''
    try {
      tail = readFileSync(logFile, 'utf8').split('\n').slice(-5).join(' ').trim()
    } catch {
      // no log yet
    }
    throw new MeshError('WIREGUARD_FAILED', {
      message: `wireguard-go did not bring up ${name}${tail ? `: ${tail}` : ''}`,
    })
  }

  async remove(name: string): Promise<void> {
    this.supervised.delete(name)
    // Deleting the link makes wireguard-go exit; the signal is for one that hangs.
    await this.deleteLink(name)
    const child = this.children.get(name)
    this.children.delete(name)
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    this.supervised.clear()
  }

  private async poll(): Promise<void> {
    if (this.polling) return
    this.polling = true
    try {
      for (const name of [...this.supervised]) {
        if (this.children.has(name)) continue // its exit event reports it
        if (!(await this.linkExists(name)) && this.supervised.has(name)) {
          this.opts.log?.('warn', 'WireGuard interface disappeared', {interface: name})
          this.onLost?.(name)
        }
      }
    } finally {
      this.polling = false
    }
  }
}
