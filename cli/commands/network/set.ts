// `mesh network set`: change a network's name, description, join policy or node cap.
import {Args, Flags} from '@oclif/core'
import type {Network} from '../../../shared/protocol/control-api.js'
import {networkUpdate} from '../../lib/admin.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {networkDetails} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class NetworkSet extends MeshCommand {
  static override summary = 'Change a network; only the flags given are changed'
  static override examples = [
    '<%= config.bin %> network set home-lab --policy approval',
    '<%= config.bin %> network set home-lab --max-nodes unlimited --description ""',
    '<%= config.bin %> network set home-lab --name lab',
  ]
  static override enableJsonFlag = true
  static override args = {network: Args.string({description: 'network name or id', required: true})}
  static override flags = {
    name: Flags.string({description: 'new name'}),
    description: Flags.string({description: 'new description ("" clears it)'}),
    policy: Flags.string({description: 'how nodes may join', options: ['open', 'invite', 'approval']}),
    'max-nodes': Flags.string({description: 'most nodes the network may hold, or `unlimited`'}),
  }

  async run(): Promise<Network> {
    const {args, flags} = await this.parse(NetworkSet)
    const body = networkUpdate(flags)
    const {api} = await openSession()
    const net = await api.updateNetwork({network: args.network}, body)
    this.log(networkDetails(net))
    return net
  }
}
