// `mesh rotate-key [NETWORK]`: a new WireGuard key pair for this node, made here; the controller
// swaps the public key and peers follow after one handshake.
import {Args} from '@oclif/core'
import type {RotateKeyResult} from '../../shared/protocol/local-api.js'
import {DaemonCommand} from '../lib/daemon-command.js'
import {keyExpiryText} from '../lib/render/resources.js'

export default class RotateKey extends DaemonCommand {
  static override summary = "Replace this node's WireGuard key pair"
  static override description =
    "meshd makes the new key pair on this machine (the private key never leaves it), the controller swaps the node's public key (the old one stops working at once) and sends peers the new one; the mesh address and the peers stay, and tunnels are back after one handshake. The key's lifetime starts again. Audited."
  static override examples = ['<%= config.bin %> rotate-key', '<%= config.bin %> rotate-key home-lab']
  static override enableJsonFlag = true
  static override args = {
    network: Args.string({description: 'network name or id; every joined network when omitted'}),
  }

  async run(): Promise<RotateKeyResult> {
    const {args, flags} = await this.parse(RotateKey)
    const res = await this.connect(flags).rotateKey(args.network === undefined ? {} : {network: args.network})
    for (const r of res.rotated)
      this.log(`${r.network}: new public key ${r.publicKey} (expires: ${keyExpiryText(r.keyExpiresAt)})`)
    return res
  }
}
