// `mesh node show`: one node in detail.
import {Args, Flags} from '@oclif/core'
import type {Node} from '../../../shared/protocol/control-api.js'
import {resolveNodeId} from '../../lib/admin.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {nodeDetails} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class NodeShow extends MeshCommand {
  static override summary = 'Show a node'
  static override examples = [
    '<%= config.bin %> node show nd_2kf8',
    '<%= config.bin %> node show laptop --network home-lab',
  ]
  static override enableJsonFlag = true
  static override args = {
    node: Args.string({description: 'node id, or its name with --network', required: true}),
  }
  static override flags = {
    network: Flags.string({char: 'n', description: 'look the node up by name in this network'}),
  }

  async run(): Promise<Node> {
    const {args, flags} = await this.parse(NodeShow)
    const {api} = await openSession()
    const node = await api.showNode({id: await resolveNodeId(api, args.node, flags.network)})
    this.log(nodeDetails(node))
    return node
  }
}
