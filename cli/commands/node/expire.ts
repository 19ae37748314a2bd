// `mesh node expire`: expire a node's key now, so it drops out of the mesh until extended.
import type {Node} from '../../../shared/protocol/control-api.js'
import {resolveNodeId} from '../../lib/admin.js'
import {nodeArg, nodeNetworkFlag} from '../../lib/flags.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {openSession} from '../../lib/session.js'

export default class NodeExpire extends MeshCommand {
  static override summary = "Expire a node's key now"
  static override description =
    'The node is disabled at once: its peers drop it and its netmap session closes with NODE_KEY_EXPIRED. It stays listed (with its address) until an admin brings it back with `mesh node extend` or removes it. Audited.'
  static override examples = [
    '<%= config.bin %> node expire nd_2kf8',
    '<%= config.bin %> node expire lost-laptop --network home-lab',
  ]
  static override enableJsonFlag = true
  static override args = {node: nodeArg()}
  static override flags = {network: nodeNetworkFlag()}

  async run(): Promise<Node> {
    const {args, flags} = await this.parse(NodeExpire)
    const {api} = await openSession()
    const node = await api.expireNode({id: await resolveNodeId(api, args.node, flags.network)})
    this.log(`Expired the key of ${node.name} (${node.address}); it is ${node.status} until extended.`)
    return node
  }
}
