// `mesh node list`: the nodes of a network, optionally only those waiting for approval.
import {Flags} from '@oclif/core'
import {NodeStatusSchema} from '../../../shared/protocol/control-api.js'
import type {PageOf} from '../../lib/controller-client.js'
import {networkFlag} from '../../lib/flags.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {nodesTable} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class NodeList extends MeshCommand {
  static override summary = 'List the nodes of a network'
  static override examples = [
    '<%= config.bin %> node list --network home-lab',
    '<%= config.bin %> node list --network home-lab --status pending',
  ]
  static override enableJsonFlag = true
  static override flags = {
    network: networkFlag(),
    status: Flags.string({description: 'only nodes in this state', options: [...NodeStatusSchema.options]}),
    limit: Flags.integer({description: 'at most this many (default: all)', min: 1}),
  }

  async run(): Promise<PageOf<'node.list'>> {
    const {flags} = await this.parse(NodeList)
    const {api} = await openSession()
    const status = flags.status as (typeof NodeStatusSchema.options)[number] | undefined
    const res = await api.listAll(
      'node.list',
      {params: {network: flags.network}, query: {status}},
      {limit: flags.limit},
    )
    this.log(nodesTable(res.items))
    return res
  }
}
