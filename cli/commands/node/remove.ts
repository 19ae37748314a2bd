// `mesh node remove`: take a node out of its network, after asking.
import {Flags} from '@oclif/core'
import type {RouteReply} from '../../../shared/protocol/control-api.js'
import {resolveNodeId} from '../../lib/admin.js'
import {nodeArg, nodeNetworkFlag} from '../../lib/flags.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {confirmOrAbort, requireTty} from '../../lib/prompt.js'
import {openSession} from '../../lib/session.js'

export default class NodeRemove extends MeshCommand {
  static override summary = 'Remove a node from its network'
  static override examples = [
    '<%= config.bin %> node remove nd_2kf8',
    '<%= config.bin %> node remove old-laptop --network home-lab --yes',
  ]
  static override enableJsonFlag = true
  static override args = {
    node: nodeArg(),
  }
  static override flags = {
    network: nodeNetworkFlag(),
    yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation', default: false}),
  }

  async run(): Promise<RouteReply<'node.remove'>> {
    const {args, flags} = await this.parse(NodeRemove)
    if (!flags.yes) requireTty(this.interactive, '--yes to confirm')
    const {api} = await openSession()
    const id = await resolveNodeId(api, args.node, flags.network)
    if (!flags.yes) {
      const node = await api.showNode({id})
      await confirmOrAbort(`Remove node ${node.name} (${node.address}) from its network?`)
    }
    const res = await api.removeNode({id})
    this.log(`Removed node ${args.node}.`)
    return res
  }
}
