// `mesh network create`: a new network with its own CIDR.
import {Args, Flags} from '@oclif/core'
import type {Network} from '../../../shared/protocol/control-api.js'
import {parseMaxNodes} from '../../lib/admin.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {networkDetails} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class NetworkCreate extends MeshCommand {
  static override summary = 'Create a network'
  static override examples = [
    '<%= config.bin %> network create home-lab --cidr 10.20.0.0/24',
    '<%= config.bin %> network create ci --cidr 10.30.0.0/22 --policy approval --max-nodes 200 --description "CI runners"',
  ]
  static override enableJsonFlag = true
  static override args = {
    name: Args.string({description: 'network name (lowercase letters, digits, dashes)', required: true}),
  }
  static override flags = {
    cidr: Flags.string({
      description: 'IPv4 prefix the node addresses come from, e.g. 10.20.0.0/24',
      required: true,
    }),
    description: Flags.string({description: 'free text shown in lists'}),
    policy: Flags.string({
      description: 'how nodes may join',
      options: ['open', 'invite', 'approval'],
      default: 'invite',
    }),
    'max-nodes': Flags.string({description: 'most nodes the network may hold (default: unlimited)'}),
  }

  async run(): Promise<Network> {
    const {args, flags} = await this.parse(NetworkCreate)
    const {api} = await openSession()
    const net = await api.createNetwork({
      name: args.name,
      cidr: flags.cidr,
      description: flags.description ?? '',
      joinPolicy: flags.policy as Network['joinPolicy'],
      maxNodes: flags['max-nodes'] === undefined ? null : parseMaxNodes(flags['max-nodes']),
    })
    this.log(networkDetails(net))
    return net
  }
}
