// `mesh network member set`: give a user a role on one network, overriding their tenant role there.
import {Args, Flags} from '@oclif/core'
import {ROLES, type NetworkMember, type Role} from '../../../../shared/protocol/control-api.js'
import {resolveUserId} from '../../../lib/admin.js'
import {MeshCommand} from '../../../lib/mesh-command.js'
import {openSession} from '../../../lib/session.js'

export default class NetworkMemberSet extends MeshCommand {
  static override summary = "Set a user's role on a network"
  static override description =
    "The network role replaces the user's tenant role on this network only, in either direction: a tenant guest can be an admin of one network, a tenant admin a guest of another."
  static override examples = [
    '<%= config.bin %> network member set home-lab alice --role admin',
    '<%= config.bin %> network member set ci usr_8sk2 --role guest --json',
  ]
  static override enableJsonFlag = true
  static override args = {
    network: Args.string({description: 'network name or id', required: true}),
    user: Args.string({description: 'user name or id', required: true}),
  }
  static override flags = {
    role: Flags.string({description: 'role on this network', options: [...ROLES], required: true}),
  }

  async run(): Promise<NetworkMember> {
    const {args, flags} = await this.parse(NetworkMemberSet)
    const {api} = await openSession()
    const id = await resolveUserId(api, args.network, args.user)
    const member = await api.setMember({network: args.network, id}, {role: flags.role as Role})
    this.log(`${member.username} is now ${member.role} on ${args.network}.`)
    return member
  }
}
