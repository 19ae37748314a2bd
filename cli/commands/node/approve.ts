// `mesh node approve`: let a pending node into an approval-policy network.
import type {Node} from '../../../shared/protocol/control-api.js'
import {resolveNodeId} from '../../lib/admin.js'
import {nodeArg, nodeNetworkFlag} from '../../lib/flags.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {openSession} from '../../lib/session.js'

export default class NodeApprove extends MeshCommand {
  static override summary = 'Approve a node that is waiting to join'
  static override examples = [
    '<%= config.bin %> node list --network home-lab --status pending',
    '<%= config.bin %> node approve nd_2kf8',
    '<%= config.bin %> node approve laptop --network home-lab',
  ]
  static override enableJsonFlag = true
  static override args = {
    node: nodeArg(),
  }
  static override flags = {
    network: nodeNetworkFlag(),
  }

  async run(): Promise<Node> {
    const {args, flags} = await this.parse(NodeApprove)
    const {api} = await openSession()
    const node = await api.approveNode({id: await resolveNodeId(api, args.node, flags.network)})
    this.log(`Approved ${node.name} (${node.address}).`)
    return node
  }
}
