/**
 * What the kernel and userspace drivers share: reading an interface with `ip -j addr` and
 * `wg show dump`, and converging it with `wg set` plus the `ip` calls its diff needs. They differ
 * only in how the link is created and removed.
 *
 * Applying is ordered so that one peer can never hold back the others: removals first, in a call
 * of their own (a peer the controller removed must stop working even while another cannot be
 * set); then the interface's own settings; then every added or changed peer in one call, and when
 * that fails, one call per peer. The peers `wg` still refuses are returned in `failed`, not
 * thrown: the daemon logs them and retries them later, with backoff.
 */
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {execa} from 'execa'
import {MeshError} from '../../shared/errors.js'
import type {BackendKind} from '../../shared/protocol/local-api.js'
import {diffInterface, isEmptyDiff, type InterfaceDiff, type PeerChange} from './diff.js'
import type {
  PeerEdit,
  ApplyResult,
  InterfaceConfig,
  InterfaceState,
  PeerConfig,
  PeerFailure,
  PeerState,
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

/** Parses `wg show IF dump`: the interface line, then one tab-separated line per peer. */
export function parseDump(
  text: string,
): {privateKey: string; publicKey: string; listenPort: number; peers: PeerState[]} | undefined {
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

/** `peer …` arguments that add a peer. */
export function addPeerArgs(p: PeerConfig): string[] {
  const args = ['peer', p.publicKey, 'allowed-ips', p.allowedIps.join(',')]
  if (p.endpoint) args.push('endpoint', p.endpoint)
  args.push('persistent-keepalive', String(p.persistentKeepalive ?? 0))
  return args
}

/** `peer …` arguments that change only what the diff says changed. */
export function updatePeerArgs(p: PeerChange): string[] {
  const args = ['peer', p.publicKey]
  if (p.allowedIps) args.push('allowed-ips', p.allowedIps.join(','))
  if (p.endpoint) args.push('endpoint', p.endpoint)
  if (p.persistentKeepalive !== undefined) args.push('persistent-keepalive', String(p.persistentKeepalive))
  return args
}

/** `peer …` arguments of a setPeers() edit. */
export function editPeerArgs(p: PeerEdit): string[] {
  return p.remove ? ['peer', p.publicKey, 'remove'] : updatePeerArgs(p)
}

/** The `wg set` calls of a diff, in the order they run (each undefined when there is nothing). */
export function wgSetCalls(
  name: string,
  desired: InterfaceConfig,
  d: InterfaceDiff,
  keyFile?: string,
): {remove?: string[]; settings?: string[]; peers: {publicKey: string; args: string[]}[]} {
  const settings: string[] = []
  if (d.listenPort) settings.push('listen-port', String(desired.listenPort))
  if (d.privateKey && keyFile) settings.push('private-key', keyFile)
  return {
    ...(d.remove.length > 0 && {remove: ['set', name, ...d.remove.flatMap((pk) => ['peer', pk, 'remove'])]}),
    ...(settings.length > 0 && {settings: ['set', name, ...settings]}),
    peers: [
      ...d.add.map((p) => ({publicKey: p.publicKey, args: addPeerArgs(p)})),
      ...d.update.map((p) => ({publicKey: p.publicKey, args: updatePeerArgs(p)})),
    ],
  }
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

  async read(name: string): Promise<InterfaceState | undefined> {
    const link = await this.runner('ip', ['-j', 'addr', 'show', 'dev', name], {timeoutMs: 5_000})
    if (link.exitCode !== 0) return undefined
    const info = (JSON.parse(link.stdout) as IpAddrJson[])[0]
    if (!info) return undefined
    const dump = await this.runner('wg', ['show', name, 'dump'], {timeoutMs: 5_000})
    if (dump.exitCode !== 0) return undefined
    const wg = parseDump(dump.stdout)
    if (!wg) return undefined
    return {
      name,
      ...wg,
      addresses: (info.addr_info ?? [])
        .filter((a) => a.family === 'inet')
        .map((a) => `${a.local}/${a.prefixlen}`),
      mtu: info.mtu ?? 0,
      up: (info.flags ?? []).includes('UP'),
    }
  }

  async apply(desired: InterfaceConfig): Promise<ApplyResult> {
    let current = await this.read(desired.name)
    let created = false
    if (!current) {
      if (await this.linkExists(desired.name))
        throw new MeshError('INTERFACE_NAME_TAKEN', {
          message: `interface ${desired.name} exists and is not a WireGuard interface`,
        })
      await this.createLink(desired.name)
      created = true
      current = await this.read(desired.name)
    }
    const d = diffInterface(current, desired)
    if (isEmptyDiff(d)) return {changed: false, created, added: 0, updated: 0, removed: 0, failed: []}
    const failed: PeerFailure[] = []
    await withKeyFile(d.privateKey ? desired.privateKey : undefined, async (keyFile) => {
      const calls = wgSetCalls(desired.name, desired, d, keyFile)
      if (calls.remove) await this.run('wg', calls.remove)
      if (calls.settings) await this.run('wg', calls.settings)
      failed.push(...(await this.applyPeers(desired.name, calls.peers)))
    })
    for (const a of d.delAddresses) await this.run('ip', ['addr', 'del', a, 'dev', desired.name])
    for (const a of d.addAddresses) await this.run('ip', ['addr', 'add', a, 'dev', desired.name])
    if (d.mtu || d.up)
      await this.run('ip', ['link', 'set', 'dev', desired.name, 'mtu', String(desired.mtu), 'up'])
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
    await this.run('wg', ['set', name, ...peers.flatMap(editPeerArgs)])
  }

  /**
   * All peers in one `wg set`; when that fails, one call per peer, so a peer wg refuses cannot
   * hold back the others. Throws only when the interface itself does not answer.
   */
  private async applyPeers(
    name: string,
    peers: {publicKey: string; args: string[]}[],
  ): Promise<PeerFailure[]> {
    if (peers.length === 0) return []
    let first: unknown
    try {
      await this.run('wg', ['set', name, ...peers.flatMap((p) => p.args)])
      return []
    } catch (err) {
      first = err
    }
    // An interface that is gone (wireguard-go died) fails every call: that is the apply's error.
    const alive = await this.runner('wg', ['show', name, 'public-key'], {timeoutMs: 5_000})
    if (alive.exitCode !== 0) throw first
    if (peers.length === 1) return [{publicKey: peers[0]!.publicKey, error: (first as Error).message}]
    const failed: PeerFailure[] = []
    for (const p of peers) {
      try {
        await this.run('wg', ['set', name, ...p.args])
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
