// `mesh node rename`: give a node a new name within its network.
import {Args} from '@oclif/core'
import type {Node} from '../../../shared/protocol/control-api.js'
import {resolveNodeId} from '../../lib/admin.js'
import {nodeArg, nodeNetworkFlag} from '../../lib/flags.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {openSession} from '../../lib/session.js'

export default class NodeRename extends MeshCommand {
  static override summary = 'Rename a node'
  static override examples = [
    '<%= config.bin %> node rename nd_2kf8 build-01',
    '<%= config.bin %> node rename laptop old-laptop --network home-lab',
  ]
  static override enableJsonFlag = true
  static override args = {
    node: nodeArg(),
    name: Args.string({description: 'new name (lowercase letters, digits, dashes)', required: true}),
  }
  static override flags = {
    network: nodeNetworkFlag(),
  }

  async run(): Promise<Node> {
    const {args, flags} = await this.parse(NodeRename)
    const {api} = await openSession()
    const node = await api.updateNode(
      {id: await resolveNodeId(api, args.node, flags.network)},
      {name: args.name},
    )
    this.log(`Renamed ${args.node} to ${node.name}.`)
    return node
  }
}
