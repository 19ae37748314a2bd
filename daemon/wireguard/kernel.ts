/** Kernel WireGuard: the link is `ip link add … type wireguard`; everything else is wg-tools. */
import {WgToolsDriver} from './wg-tools.js'

export class KernelDriver extends WgToolsDriver {
  readonly kind = 'kernel' as const

  protected async createLink(name: string): Promise<void> {
    await this.run('ip', ['link', 'add', 'dev', name, 'type', 'wireguard'])
  }

  async remove(name: string): Promise<void> {
    await this.deleteLink(name)
  }

  /** Kernel interfaces need no supervision. */
  async close(): Promise<void> {}
}
