// `mesh network delete`: remove a network and its nodes, after asking.
import {Args, Flags} from '@oclif/core'
import type {RouteReply} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {confirmOrAbort, requireTty} from '../../lib/prompt.js'
import {openSession} from '../../lib/session.js'

export default class NetworkDelete extends MeshCommand {
  static override summary = 'Delete a network and all its nodes'
  static override examples = [
    '<%= config.bin %> network delete home-lab',
    '<%= config.bin %> network delete home-lab --yes',
  ]
  static override enableJsonFlag = true
  static override args = {network: Args.string({description: 'network name or id', required: true})}
  static override flags = {
    yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation', default: false}),
  }

  async run(): Promise<RouteReply<'network.delete'>> {
    const {args, flags} = await this.parse(NetworkDelete)
    if (!flags.yes) requireTty(this.interactive, '--yes to confirm')
    const {api} = await openSession()
    if (!flags.yes) {
      // Name what is at stake; this also turns a typo into NOT_FOUND before any question.
      const net = await api.showNetwork({network: args.network})
      await confirmOrAbort(`Delete network ${net.name} (${net.cidr}) and its ${net.nodeCount} node(s)?`)
    }
    const res = await api.deleteNetwork({network: args.network})
    this.log(`Deleted network ${args.network}.`)
    return res
  }
}
