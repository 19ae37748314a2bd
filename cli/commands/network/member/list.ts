// `mesh network member list`: the users with a role of their own on one network.
import {Args} from '@oclif/core'
import type {RouteReply} from '../../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../../lib/mesh-command.js'
import {membersTable} from '../../../lib/render/resources.js'
import {openSession} from '../../../lib/session.js'

export default class NetworkMemberList extends MeshCommand {
  static override summary = 'List the users with a role of their own on a network'
  static override description =
    'Users not listed have their tenant role on the network (see `mesh user list`).'
  static override examples = [
    '<%= config.bin %> network member list home-lab',
    '<%= config.bin %> network member list home-lab --json',
  ]
  static override enableJsonFlag = true
  static override args = {network: Args.string({description: 'network name or id', required: true})}

  async run(): Promise<RouteReply<'member.list'>> {
    const {args} = await this.parse(NetworkMemberList)
    const {api} = await openSession()
    const res = await api.listMembers({network: args.network})
    this.log(membersTable(res.items, args.network))
    return res
  }
}
