// `mesh netcheck`: UDP, public address, NAT mapping and filtering, port preservation and relay
// reachability, as meshd measures them against the network's STUN server and relays.
import {Flags} from '@oclif/core'
import type {NetcheckResult} from '../../shared/protocol/local-api.js'
import {DaemonCommand} from '../lib/daemon-command.js'
import {netcheckText} from '../lib/render/netcheck.js'

export default class NetcheckCommand extends DaemonCommand {
  static override summary = "Check this node's UDP, NAT type and relay reachability"
  static override description = `Like \`tailscale netcheck\`: meshd asks the STUN server of the network's controller (RFC 5389, with the RFC 5780 mapping and filtering tests when it has an alternate address), times a GET of each relay, and prints what that means for direct connections. Exit 0 whenever the check ran, whatever NAT it found.`
  static override examples = [
    '<%= config.bin %> netcheck',
    '<%= config.bin %> netcheck --network home --json',
  ]
  static override enableJsonFlag = true
  static override flags = {
    network: Flags.string({
      description: 'network name or id [default: the first joined network whose controller offers STUN]',
    }),
  }

  async run(): Promise<NetcheckResult> {
    const {flags} = await this.parse(NetcheckCommand)
    const res = await this.connect(flags).netcheck(
      flags.network === undefined ? {} : {network: flags.network},
    )
    this.log(netcheckText(res))
    return res
  }
}
