/**
 * What the kernel and userspace drivers share: the link read with `ip -j addr` and changed with
 * the `ip` calls its diff needs, and the order in which a diff is applied to WireGuard. How a
 * WireGuard transaction travels is the subclass's: by default `wg show dump` and `wg set` (the
 * kernel driver); the userspace driver overrides readDevice/setDevice/deviceAnswers to speak
 * wireguard-go's UAPI socket instead (uapi.ts).
 *
 * Applying is ordered so that one peer can never hold back the others (planApply): removals
 * first, in a transaction of their own (a peer the controller removed must stop working even
 * while another cannot be set); then the interface's own settings; then every added or changed
 * peer in one transaction, and when that fails, one per peer. The peers WireGuard still refuses
 * are returned in `failed`, not thrown: the daemon logs them and retries them later, with backoff.
 */
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {execa} from 'execa'
import {MeshError} from '../../shared/errors.js'
import type {BackendKind} from '../../shared/protocol/local-api.js'
import {diffInterface, isEmptyDiff, type InterfaceDiff} from './diff.js'
import type {
  PeerEdit,
  ApplyResult,
  InterfaceConfig,
  InterfaceState,
  PeerConfig,
  PeerFailure,
  PeerState,
  WgDevice,
  WgSet,
  WireGuardDriver,
} from './driver.js'

export interface RunResult {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}
/** Runs one command without a shell; never throws for a failing command (see exitCode). */
export type CommandRunner = (
  cmd: string,
  args: readonly string[],
  opts: {timeoutMs: number},
) => Promise<RunResult>

/**
 * wg never needs to resolve a name (endpoints are IP literals, shared/net/endpoint.ts), so a
 * name that slipped through fails at once instead of wg retrying it for minutes.
 */
const WG_ENV = {WG_ENDPOINT_RESOLUTION_RETRIES: '0'}

export const execaRunner: CommandRunner = async (cmd, args, opts) => {
  const res = await execa(cmd, args, {reject: false, timeout: opts.timeoutMs, env: WG_ENV})
  return {
    exitCode: res.failed && !res.exitCode ? 1 : (res.exitCode ?? 1),
    stdout: String(res.stdout ?? ''),
    stderr: String(res.stderr || res.shortMessage || '').trim(),
  }
}

/** Runs a command; a failure becomes WIREGUARD_FAILED with the tool's own stderr. */
export async function run(
  cmd: string,
  args: readonly string[],
  runner: CommandRunner = execaRunner,
  timeoutMs = 10_000,
): Promise<string> {
  const res = await runner(cmd, args, {timeoutMs})
  if (res.exitCode !== 0) {
    // args never hold a private key (it goes through a file), so they are safe in a message.
    throw new MeshError('WIREGUARD_FAILED', {message: `${cmd} ${args.join(' ')} failed: ${res.stderr}`})
  }
  return res.stdout
}

interface IpAddrJson {
  ifname: string
  flags?: string[]
  mtu?: number
  addr_info?: {family: string; local: string; prefixlen: number}[]
}

/** The link part of an interface, as `ip -j addr show` gives it. */
export interface LinkState {
  readonly addresses: readonly string[]
  readonly mtu: number
  readonly up: boolean
}

/** Parses `ip -j addr show dev IF`; undefined when it names no link. */
export function parseIpAddr(text: string): LinkState | undefined {
  const info = (JSON.parse(text) as IpAddrJson[])[0]
  if (!info) return undefined
  return {
    addresses: (info.addr_info ?? [])
      .filter((a) => a.family === 'inet')
      .map((a) => `${a.local}/${a.prefixlen}`),
    mtu: info.mtu ?? 0,
    up: (info.flags ?? []).includes('UP'),
  }
}

/** Parses `wg show IF dump`: the interface line, then one tab-separated line per peer. */
export function parseDump(text: string): WgDevice | undefined {
  const lines = text.split('\n').filter((l) => l.length > 0)
  const head = lines[0]?.split('\t')
  if (!head || head.length < 3) return undefined
  const peers: PeerState[] = []
  for (const line of lines.slice(1)) {
    const [publicKey, , endpoint, allowed, handshake, rx, tx, keepalive] = line.split('\t')
    if (!publicKey) continue
    peers.push({
      publicKey,
      ...(endpoint && endpoint !== '(none)' && {endpoint}),
      allowedIps: !allowed || allowed === '(none)' ? [] : allowed.split(','),
      lastHandshakeMs: Number(handshake ?? 0) * 1000,
      rxBytes: Number(rx ?? 0),
      txBytes: Number(tx ?? 0),
      ...(keepalive && keepalive !== 'off' && {persistentKeepalive: Number(keepalive)}),
    })
  }
  return {privateKey: head[0] ?? '', publicKey: head[1] ?? '', listenPort: Number(head[2]), peers}
}

/** `peer …` arguments of one peer of a transaction. */
export function editPeerArgs(p: PeerEdit): string[] {
  if (p.remove) return ['peer', p.publicKey, 'remove']
  const args = ['peer', p.publicKey]
  if (p.allowedIps) args.push('allowed-ips', p.allowedIps.join(','))
  if (p.endpoint) args.push('endpoint', p.endpoint)
  if (p.persistentKeepalive !== undefined) args.push('persistent-keepalive', String(p.persistentKeepalive))
  return args
}

/** The edit that adds a peer: every field set (keepalive 0 when none), so nothing is left over. */
export function addPeerEdit(p: PeerConfig): PeerEdit {
  return {
    publicKey: p.publicKey,
    allowedIps: p.allowedIps,
    ...(p.endpoint && {endpoint: p.endpoint}),
    persistentKeepalive: p.persistentKeepalive ?? 0,
  }
}

/** The WireGuard transactions of a diff, in the order they run (see the module comment). */
export interface ApplyPlan {
  readonly remove?: WgSet
  readonly settings?: WgSet
  /** Added, then changed peers: one transaction, or one per peer when that one fails. */
  readonly peers: readonly PeerEdit[]
}

export function planApply(desired: InterfaceConfig, d: InterfaceDiff): ApplyPlan {
  const settings: {privateKey?: string; listenPort?: number} = {}
  if (d.listenPort) settings.listenPort = desired.listenPort
  if (d.privateKey) settings.privateKey = desired.privateKey
  return {
    ...(d.remove.length > 0 && {remove: {peers: d.remove.map((publicKey) => ({publicKey, remove: true}))}}),
    ...(Object.keys(settings).length > 0 && {settings}),
    peers: [...d.add.map(addPeerEdit), ...d.update],
  }
}

/** `wg set` arguments of a transaction; the private key only as the path of a file holding it. */
export function wgSetArgs(name: string, tx: WgSet, keyFile?: string): string[] {
  const args = ['set', name]
  if (tx.listenPort !== undefined) args.push('listen-port', String(tx.listenPort))
  if (tx.privateKey !== undefined) {
    if (keyFile === undefined) throw new Error('wgSetArgs: a private key goes through a file')
    args.push('private-key', keyFile)
  }
  for (const p of tx.peers ?? []) args.push(...editPeerArgs(p))
  return args
}

/**
 * Hands a private key to `wg set … private-key FILE` through a 0600 file in a fresh 0700 dir,
 * removed right after. Not /dev/stdin: Node's child stdio are socketpairs, which wg cannot
 * fopen; and never an argument, which every user could read in /proc.
 */
async function withKeyFile<T>(
  key: string | undefined,
  fn: (file: string | undefined) => Promise<T>,
): Promise<T> {
  if (key === undefined) return fn(undefined)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshd-key-'))
  try {
    const file = path.join(dir, 'key')
    writeFileSync(file, `${key}\n`, {mode: 0o600})
    return await fn(file)
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

export abstract class WgToolsDriver implements WireGuardDriver {
  abstract readonly kind: BackendKind
  onLost?: (name: string) => void
  protected abstract createLink(name: string): Promise<void>
  abstract remove(name: string): Promise<void>
  abstract close(): Promise<void>

  /** `runner` runs ip and wg (tests pass a fake one, or one that enters a network namespace). */
  constructor(protected readonly runner: CommandRunner = execaRunner) {}

  protected run(cmd: string, args: readonly string[], timeoutMs = 10_000): Promise<string> {
    return run(cmd, args, this.runner, timeoutMs)
  }

  async linkExists(name: string): Promise<boolean> {
    const res = await this.runner('ip', ['link', 'show', 'dev', name], {timeoutMs: 5_000})
    return res.exitCode === 0
  }

  /** The link part (`ip -j addr show`); undefined when there is no such link. */
  protected async readLink(name: string): Promise<LinkState | undefined> {
    const res = await this.runner('ip', ['-j', 'addr', 'show', 'dev', name], {timeoutMs: 5_000})
    if (res.exitCode !== 0) return undefined
    return parseIpAddr(res.stdout)
  }

  /** The WireGuard part (`wg show dump`); undefined when `name` is no WireGuard interface. */
  protected async readDevice(name: string): Promise<WgDevice | undefined> {
    const dump = await this.runner('wg', ['show', name, 'dump'], {timeoutMs: 5_000})
    if (dump.exitCode !== 0) return undefined
    return parseDump(dump.stdout)
  }

  /** Runs one transaction (`wg set`); throws WIREGUARD_FAILED when WireGuard refuses it. */
  protected async setDevice(name: string, tx: WgSet): Promise<void> {
    await withKeyFile(tx.privateKey, (keyFile) => this.run('wg', wgSetArgs(name, tx, keyFile)))
  }

  /** Whether the WireGuard device still answers (asked after a transaction failed). */
  protected async deviceAnswers(name: string): Promise<boolean> {
    const res = await this.runner('wg', ['show', name, 'public-key'], {timeoutMs: 5_000})
    return res.exitCode === 0
  }

  /** Called after apply() changed the link with `ip` (or tried to): for a cache of it. */
  protected linkChanged(_name: string): void {}

  /** The interface as it is now, link and WireGuard read afresh: what apply() converges from. */
  protected async readNow(name: string): Promise<InterfaceState | undefined> {
    const link = await this.readLink(name)
    if (!link) return undefined
    const wg = await this.readDevice(name)
    if (!wg) return undefined
    return {name, ...wg, ...link}
  }

  read(name: string): Promise<InterfaceState | undefined> {
    return this.readNow(name)
  }

  async create(name: string): Promise<boolean> {
    if (await this.deviceAnswers(name)) return false
    if (await this.linkExists(name))
      throw new MeshError('INTERFACE_NAME_TAKEN', {
        message: `interface ${name} exists and is not a WireGuard interface`,
      })
    await this.createLink(name)
    this.linkChanged(name)
    return true
  }

  async apply(desired: InterfaceConfig): Promise<ApplyResult> {
    let current = await this.readNow(desired.name)
    let created = false
    if (!current) {
      if (await this.linkExists(desired.name))
        throw new MeshError('INTERFACE_NAME_TAKEN', {
          message: `interface ${desired.name} exists and is not a WireGuard interface`,
        })
      await this.createLink(desired.name)
      created = true
      current = await this.readNow(desired.name)
    }
    const d = diffInterface(current, desired)
    if (isEmptyDiff(d)) return {changed: false, created, added: 0, updated: 0, removed: 0, failed: []}
    const plan = planApply(desired, d)
    if (plan.remove) await this.setDevice(desired.name, plan.remove)
    if (plan.settings) await this.setDevice(desired.name, plan.settings)
    const failed = await this.applyPeers(desired.name, plan.peers)
    if (d.delAddresses.length > 0 || d.addAddresses.length > 0 || d.mtu || d.up) {
      try {
        for (const a of d.delAddresses) await this.run('ip', ['addr', 'del', a, 'dev', desired.name])
        for (const a of d.addAddresses) await this.run('ip', ['addr', 'add', a, 'dev', desired.name])
        if (d.mtu || d.up)
          await this.run('ip', ['link', 'set', 'dev', desired.name, 'mtu', String(desired.mtu), 'up'])
      } finally {
        this.linkChanged(desired.name)
      }
    }
    const bad = new Set(failed.map((f) => f.publicKey))
    return {
      changed: true,
      created,
      added: d.add.filter((p) => !bad.has(p.publicKey)).length,
      updated: d.update.filter((p) => !bad.has(p.publicKey)).length,
      removed: d.remove.length,
      failed,
    }
  }

  async setPeers(name: string, peers: readonly PeerEdit[]): Promise<void> {
    if (peers.length === 0) return
    await this.setDevice(name, {peers})
  }

  /**
   * All peers in one transaction; when that fails, one per peer, so a peer WireGuard refuses
   * cannot hold back the others. Throws only when the interface itself does not answer.
   */
  private async applyPeers(name: string, peers: readonly PeerEdit[]): Promise<PeerFailure[]> {
    if (peers.length === 0) return []
    let first: unknown
    try {
      await this.setDevice(name, {peers})
      return []
    } catch (err) {
      first = err
    }
    // An interface that is gone (wireguard-go died) fails every call: that is the apply's error.
    if (!(await this.deviceAnswers(name))) throw first
    if (peers.length === 1) return [{publicKey: peers[0]!.publicKey, error: (first as Error).message}]
    const failed: PeerFailure[] = []
    for (const p of peers) {
      try {
        await this.setDevice(name, {peers: [p]})
      } catch (err) {
        failed.push({publicKey: p.publicKey, error: (err as Error).message})
      }
    }
    return failed
  }

  /** `ip link del`; a link that is already gone is fine. */
  protected async deleteLink(name: string): Promise<void> {
    const res = await this.runner('ip', ['link', 'del', 'dev', name], {timeoutMs: 10_000})
    if (res.exitCode !== 0 && (await this.linkExists(name)))
      throw new MeshError('WIREGUARD_FAILED', {message: `ip link del ${name} failed: ${res.stderr}`})
  }
}
