// `mesh node extend`: give a node's key a new expiry; an expired node comes back.
import {Flags} from '@oclif/core'
import type {Node} from '../../../shared/protocol/control-api.js'
import {resolveNodeId} from '../../lib/admin.js'
import {parseDuration} from '../../lib/duration.js'
import {nodeArg, nodeNetworkFlag} from '../../lib/flags.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {keyExpiryText} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class NodeExtend extends MeshCommand {
  static override summary = "Give a node's key a new expiry"
  static override description =
    "Without --by or --never the key gets the tenant's default lifetime from now (`mesh tenant key-expiry`). A node disabled because its key expired is active again: its peers get it back and its meshd reconnects by itself. Audited."
  static override examples = [
    '<%= config.bin %> node extend nd_2kf8',
    '<%= config.bin %> node extend laptop --network home-lab --by 90d',
    '<%= config.bin %> node extend build-server --network home-lab --never',
  ]
  static override enableJsonFlag = true
  static override args = {node: nodeArg()}
  static override flags = {
    network: nodeNetworkFlag(),
    by: Flags.string({description: 'new expiry this far from now (30m, 12h, 90d, 2w)', exclusive: ['never']}),
    never: Flags.boolean({description: 'the key never expires', default: false, exclusive: ['by']}),
  }

  async run(): Promise<Node> {
    const {args, flags} = await this.parse(NodeExtend)
    const by = flags.by === undefined ? undefined : parseDuration(flags.by, '--by')
    const {api} = await openSession()
    const id = await resolveNodeId(api, args.node, flags.network)
    const node = await api.extendNode(
      {id},
      {...(by !== undefined && {by}), ...(flags.never && {never: true})},
    )
    this.log(`The key of ${node.name} now expires: ${keyExpiryText(node.keyExpiresAt)}.`)
    return node
  }
}
