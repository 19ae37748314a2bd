/**
 * Picks the WireGuard backend once, at start-up: kernel when `ip link add … type wireguard`
 * works (the module is there and we may use it), else wireguard-go. Status records the choice.
 */
import {randomBytes} from 'node:crypto'
import {execa} from 'execa'
import {MeshError} from '../../shared/errors.js'
import type {WireGuardDriver} from './driver.js'
import {KernelDriver} from './kernel.js'
import {UserspaceDriver, type UserspaceDriverOptions} from './userspace.js'

export type BackendChoice = 'auto' | 'kernel' | 'userspace'

async function commandWorks(cmd: string, args: string[]): Promise<boolean> {
  const res = await execa(cmd, args, {reject: false, timeout: 5_000})
  return res.exitCode === 0
}

export async function kernelWireGuardWorks(): Promise<boolean> {
  const probe = `mwgprobe${randomBytes(3).toString('hex')}`
  if (!(await commandWorks('ip', ['link', 'add', 'dev', probe, 'type', 'wireguard']))) return false
  await commandWorks('ip', ['link', 'del', 'dev', probe])
  return true
}

export async function selectDriver(
  choice: BackendChoice,
  userspace: UserspaceDriverOptions,
): Promise<WireGuardDriver> {
  if (!(await commandWorks('wg', ['--version'])) || !(await commandWorks('ip', ['-V'])))
    throw new MeshError('WIREGUARD_UNAVAILABLE', {message: 'the `wg` and `ip` tools are needed'})
  if (choice !== 'userspace' && (await kernelWireGuardWorks())) return new KernelDriver()
  if (choice === 'kernel')
    throw new MeshError('WIREGUARD_UNAVAILABLE', {message: 'kernel WireGuard is not available here'})
  if (!(await commandWorks(userspace.binary ?? 'wireguard-go', ['--version'])))
    throw new MeshError('WIREGUARD_UNAVAILABLE')
  return new UserspaceDriver(userspace)
}
