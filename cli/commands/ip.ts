// `mesh ip [NETWORK]`: this node's mesh address(es), one per line, for scripts and people.
import {Args} from '@oclif/core'
import {MeshError} from '../../shared/errors.js'
import type {IpResult} from '../../shared/protocol/local-api.js'
import {DaemonCommand} from '../lib/daemon-command.js'
import {renderTable} from '../lib/render/table.js'

export default class Ip extends DaemonCommand {
  static override summary = "Show this node's mesh addresses"
  static override examples = ['<%= config.bin %> ip', '<%= config.bin %> ip home-lab']
  static override enableJsonFlag = true
  static override args = {network: Args.string({description: 'network name; all networks when omitted'})}

  async run(): Promise<IpResult> {
    const {args, flags} = await this.parse(Ip)
    const all = await this.connect(flags).ip()
    const addresses =
      args.network === undefined ? all.addresses : all.addresses.filter((a) => a.network === args.network)
    if (args.network !== undefined && addresses.length === 0)
      throw new MeshError('NETWORK_NOT_JOINED', {message: `not a member of network ${args.network}`})
    if (addresses.length === 0) this.logToStderr('no network joined; join one with `mesh join <invite>`')
    else if (addresses.length === 1) this.log(addresses[0]!.address)
    else
      this.log(
        renderTable(addresses, [
          {header: 'NETWORK', get: (a) => a.network},
          {header: 'ADDRESS', get: (a) => a.address},
          {header: 'INTERFACE', get: (a) => a.interface},
        ]),
      )
    return {addresses}
  }
}
