/**
 * Userspace WireGuard: one supervised `wireguard-go -f IFNAME` per interface (for machines
 * without the kernel module). wireguard-go runs detached from meshd's process group so the data
 * plane outlives a daemon restart; a restarted daemon adopts the running processes and supervises
 * them by polling the link. When one dies the driver reports the interface lost and the daemon
 * re-applies its config, which starts a new one.
 *
 * WireGuard is read and configured over wireguard-go's UAPI socket (uapi.ts), never by spawning
 * `wg`: the daemon reads every interface about once a second (path checks), and those spawns
 * cost meshd a sixth to a quarter of its CPU on the cores that carry relayed traffic (issue 7).
 * Ordering and per-peer fallback are WgToolsDriver's, shared with the kernel driver.
 *
 * The link part of a read (addresses, MTU, up) comes from `ip`, which is a spawn too, and a path
 * check needs only the peers. So read() serves the link from a cache: filled by any `ip` read
 * (apply's, the first read's, the supervision poll's), and dropped whenever apply() changes the
 * link, the interface is removed or lost, or UAPI finds no wireguard-go. An apply that changes
 * anything reads the link with `ip`, since it converges the interface from that; one that would
 * change nothing by the cached link and a UAPI read (most applies: netmap deltas about peers'
 * reports, path checks) returns without a spawn. Between two applies only someone else's `ip`
 * can change the link; for adopted interfaces the 2 s poll (one `ip` call, as before) refreshes
 * it, for spawned ones the next apply that changes something converges it. The link fields of
 * read() are informational to the daemon (only the diff uses them, through apply).
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {closeSync, existsSync, mkdirSync, openSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {MeshError} from '../../shared/errors.js'
import {diffInterface, isEmptyDiff} from './diff.js'
import type {InterfaceState, WgDevice, WgSet} from './driver.js'
import {UAPI_DIR, UapiClient} from './uapi.js'
import {WgToolsDriver, type CommandRunner, type LinkState} from './wg-tools.js'

export interface UserspaceDriverOptions {
  /** Where wireguard-go's own output goes (one file per interface). */
  logDir: string
  binary?: string
  /** How often adopted and spawned interfaces are checked; default 2 s. */
  pollMs?: number
  log?: (level: 'info' | 'warn', msg: string, extra?: Record<string, unknown>) => void
  /** Runs ip; default execa (tests enter a network namespace through it). */
  runner?: CommandRunner
  /** wireguard-go's socket dir; /var/run/wireguard (for tests). */
  uapiDir?: string
}

export class UserspaceDriver extends WgToolsDriver {
  readonly kind = 'userspace' as const
  private readonly children = new Map<string, ChildProcess>()
  /** Interfaces this driver made or adopted: checked every pollMs, re-created when lost. */
  private readonly supervised = new Set<string>()
  private readonly timer: NodeJS.Timeout
  private polling = false
  private readonly uapi: UapiClient
  private readonly uapiDir: string
  /** The link part of each interface as `ip` last saw it (see the module comment). */
  private readonly links = new Map<string, LinkState>()
  /** Bumped whenever a cached link is dropped (one counter for all: drops are rare). */
  private linkGen = 0

  constructor(private readonly opts: UserspaceDriverOptions) {
    super(opts.runner)
    this.uapiDir = opts.uapiDir ?? UAPI_DIR
    this.uapi = new UapiClient({dir: this.uapiDir})
    this.timer = setInterval(() => void this.poll(), opts.pollMs ?? 2_000)
    this.timer.unref()
  }

  override async apply(desired: Parameters<WgToolsDriver['apply']>[0]): ReturnType<WgToolsDriver['apply']> {
    this.supervised.add(desired.name)
    // Most applies change nothing (a netmap delta about a peer's report, a path check): those are
    // told from the cached link and one UAPI read, without an `ip` spawn, which on a loaded
    // machine costs meshd 10-100 ms and blocks its event loop (relayed packets included) while it
    // forks, in the very moments a new pair sends its first packets. An apply that changes
    // anything goes the full way, from a fresh `ip` read.
    const link = this.links.get(desired.name)
    if (link) {
      const wg = await this.readDevice(desired.name).catch(() => undefined)
      if (wg && isEmptyDiff(diffInterface({name: desired.name, ...wg, ...link}, desired)))
        return {changed: false, created: false, added: 0, updated: 0, removed: 0, failed: []}
    }
    return super.apply(desired)
  }

  /**
   * Supervised once it is there: added before, the poll could find no link while wireguard-go is
   * still starting and report the interface lost (seen in the lab: a needless rebuild).
   */
  override async create(name: string): Promise<boolean> {
    const made = await super.create(name)
    this.supervised.add(name)
    return made
  }

  /** Peers and keys over UAPI; the link from the cache, or from `ip` when there is none. */
  override async read(name: string): Promise<InterfaceState | undefined> {
    const wg = await this.readDevice(name)
    if (!wg) {
      this.dropLink(name)
      return undefined
    }
    const link = this.links.get(name) ?? (await this.readLink(name))
    return link && {name, ...wg, ...link}
  }

  protected override async readLink(name: string): Promise<LinkState | undefined> {
    const gen = this.linkGen
    const link = await super.readLink(name)
    // A read that started before the link changed (or was dropped) must not cache what it saw.
    if (gen !== this.linkGen) return link
    if (link) this.links.set(name, link)
    else this.links.delete(name)
    return link
  }

  protected override linkChanged(name: string): void {
    this.dropLink(name)
  }

  private dropLink(name: string): void {
    this.linkGen++
    this.links.delete(name)
  }

  protected override readDevice(name: string): Promise<WgDevice | undefined> {
    return this.uapi.get(name)
  }

  protected override setDevice(name: string, tx: WgSet): Promise<void> {
    return this.uapi.set(name, tx)
  }

  protected override async deviceAnswers(name: string): Promise<boolean> {
    return (await this.uapi.get(name).catch(() => undefined)) !== undefined
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
      this.dropLink(name)
      // Only a process that came up is "lost". One that dies while starting fails this apply,
      // whose retry is paced; reporting it lost too would re-apply at once, in a tight loop.
      const lost = ready && this.supervised.has(name)
      // Not logged: the exit of one this driver removed.
      if (!ready || lost)
        this.opts.log?.('warn', ready ? 'wireguard-go exited' : 'wireguard-go exited while starting', {
          interface: name,
          code,
        })
      if (lost) this.onLost?.(name)
    })
    this.children.set(name, child)
    // Ready when the link and the UAPI socket exist; bounded at 5 s. The socket is looked for
    // every 10 ms (a stat; wireguard-go makes it right after the link), the link with `ip` only
    // once it is there: every wait here delays the interface's first apply.
    for (let i = 0; i < 500; i++) {
      if (exited !== undefined) break
      if (existsSync(path.join(this.uapiDir, `${name}.sock`)) && (await this.linkExists(name))) {
        this.opts.log?.('info', 'wireguard-go started', {interface: name, pid: child.pid})
        ready = true
        return
      }
      await sleep(10)
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
    this.dropLink(name)
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
        // One `ip` call, as linkExists was; it also refreshes the cached link. Output `ip` could
        // not make sense of counts as "still there", as linkExists did.
        const gone = await this.readLink(name).then(
          (link) => link === undefined,
          () => false,
        )
        if (gone && this.supervised.has(name)) {
          this.opts.log?.('warn', 'WireGuard interface disappeared', {interface: name})
          this.onLost?.(name)
        }
      }
    } finally {
      this.polling = false
    }
  }
}
