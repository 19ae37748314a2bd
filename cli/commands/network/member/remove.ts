// `mesh network member remove`: drop a user's network role, so their tenant role applies again.
import {Args} from '@oclif/core'
import type {RouteReply} from '../../../../shared/protocol/control-api.js'
import {resolveUserId} from '../../../lib/admin.js'
import {MeshCommand} from '../../../lib/mesh-command.js'
import {openSession} from '../../../lib/session.js'

export default class NetworkMemberRemove extends MeshCommand {
  static override summary = "Remove a user's role on a network; their tenant role applies there again"
  static override examples = [
    '<%= config.bin %> network member remove home-lab alice',
    '<%= config.bin %> network member remove home-lab usr_8sk2 --json',
  ]
  static override enableJsonFlag = true
  static override args = {
    network: Args.string({description: 'network name or id', required: true}),
    user: Args.string({description: 'user name or id', required: true}),
  }

  async run(): Promise<RouteReply<'member.remove'>> {
    const {args} = await this.parse(NetworkMemberRemove)
    const {api} = await openSession()
    const id = await resolveUserId(api, args.network, args.user)
    const res = await api.removeMember({network: args.network, id})
    this.log(`${args.user} has no role of their own on ${args.network} now; their tenant role applies.`)
    return res
  }
}
