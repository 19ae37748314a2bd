// `mesh node show`: one node in detail, with its current connections (path, latency, since).
import type {NodeDetail} from '../../../shared/protocol/control-api.js'
import {nodeDetail, resolveNodeId} from '../../lib/admin.js'
import {nodeArg, nodeNetworkFlag} from '../../lib/flags.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {nodeConnectionsTable, nodeDetails} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class NodeShow extends MeshCommand {
  static override summary = 'Show a node'
  static override examples = [
    '<%= config.bin %> node show nd_2kf8',
    '<%= config.bin %> node show laptop --network home-lab',
  ]
  static override enableJsonFlag = true
  static override args = {
    node: nodeArg(),
  }
  static override flags = {
    network: nodeNetworkFlag(),
  }

  async run(): Promise<NodeDetail> {
    const {args, flags} = await this.parse(NodeShow)
    const {api} = await openSession()
    const node = await api.showNode({id: await resolveNodeId(api, args.node, flags.network)})
    // The node is shown even when its connections cannot be read (an older controller without
    // the route, or a reply outside the schema): they are a detail, said so on stderr.
    const items = await api
      .listAll('connection.list', {params: {network: node.networkId}, query: {node: node.id}})
      .then((r) => r.items)
      .catch((err: unknown) => {
        this.warn(`connections not shown: ${err instanceof Error ? err.message : String(err)}`)
        return []
      })
    const detail = nodeDetail(node, items)
    this.log(nodeDetails(node))
    this.log('')
    this.log(nodeConnectionsTable(detail))
    return detail
  }
}
