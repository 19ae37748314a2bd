/**
 * What the kernel and userspace drivers share: reading an interface with `ip -j addr` and
 * `wg show dump`, and converging it with ONE `wg set` call plus the `ip` calls its diff needs.
 * They differ only in how the link is created and removed.
 */
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {execa} from 'execa'
import {MeshError} from '../../shared/errors.js'
import type {BackendKind} from '../../shared/protocol/local-api.js'
import {diffInterface, isEmptyDiff, type InterfaceDiff} from './diff.js'
import type {ApplyResult, InterfaceConfig, InterfaceState, PeerState, WireGuardDriver} from './driver.js'

/** Runs a command; a failure becomes WIREGUARD_FAILED with the tool's own stderr. */
export async function run(cmd: string, args: readonly string[]): Promise<string> {
  const res = await execa(cmd, args, {reject: false, timeout: 10_000})
  if (res.exitCode !== 0 || res.failed) {
    // args never hold a private key (it goes through stdin), so they are safe in a message.
    const why = String(res.stderr || res.shortMessage || '').trim()
    throw new MeshError('WIREGUARD_FAILED', {message: `${cmd} ${args.join(' ')} failed: ${why}`})
  }
  return String(res.stdout)
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

/** `wg set` arguments for a diff; the private key, when it changes, is read from `keyFile`. */
export function wgSetArgs(
  name: string,
  desired: InterfaceConfig,
  d: InterfaceDiff,
  keyFile?: string,
): string[] {
  const args = ['set', name]
  if (d.listenPort) args.push('listen-port', String(desired.listenPort))
  if (d.privateKey && keyFile) args.push('private-key', keyFile)
  for (const pk of d.remove) args.push('peer', pk, 'remove')
  for (const p of d.add) {
    args.push('peer', p.publicKey, 'allowed-ips', p.allowedIps.join(','))
    if (p.endpoint) args.push('endpoint', p.endpoint)
    args.push('persistent-keepalive', String(p.persistentKeepalive ?? 0))
  }
  for (const p of d.update) {
    args.push('peer', p.publicKey)
    if (p.allowedIps) args.push('allowed-ips', p.allowedIps.join(','))
    if (p.endpoint) args.push('endpoint', p.endpoint)
    if (p.persistentKeepalive !== undefined) args.push('persistent-keepalive', String(p.persistentKeepalive))
  }
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

  async linkExists(name: string): Promise<boolean> {
    const res = await execa('ip', ['link', 'show', 'dev', name], {reject: false, timeout: 5_000})
    return res.exitCode === 0
  }

  async read(name: string): Promise<InterfaceState | undefined> {
    const link = await execa('ip', ['-j', 'addr', 'show', 'dev', name], {reject: false, timeout: 5_000})
    if (link.exitCode !== 0) return undefined
    const info = (JSON.parse(String(link.stdout)) as IpAddrJson[])[0]
    if (!info) return undefined
    const dump = await execa('wg', ['show', name, 'dump'], {reject: false, timeout: 5_000})
    if (dump.exitCode !== 0) return undefined
    const wg = parseDump(String(dump.stdout))
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
    if (isEmptyDiff(d)) return {changed: false, created, added: 0, updated: 0, removed: 0}
    await withKeyFile(d.privateKey ? desired.privateKey : undefined, async (keyFile) => {
      const setArgs = wgSetArgs(desired.name, desired, d, keyFile)
      if (setArgs.length > 2) await run('wg', setArgs)
    })
    for (const a of d.delAddresses) await run('ip', ['addr', 'del', a, 'dev', desired.name])
    for (const a of d.addAddresses) await run('ip', ['addr', 'add', a, 'dev', desired.name])
    if (d.mtu || d.up) await run('ip', ['link', 'set', 'dev', desired.name, 'mtu', String(desired.mtu), 'up'])
    return {changed: true, created, added: d.add.length, updated: d.update.length, removed: d.remove.length}
  }

  /** `ip link del`; a link that is already gone is fine. */
  protected async deleteLink(name: string): Promise<void> {
    const res = await execa('ip', ['link', 'del', 'dev', name], {reject: false, timeout: 10_000})
    if (res.exitCode !== 0 && (await this.linkExists(name)))
      throw new MeshError('WIREGUARD_FAILED', {message: `ip link del ${name} failed: ${String(res.stderr)}`})
  }
}
