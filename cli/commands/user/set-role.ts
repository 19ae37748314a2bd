// `mesh user set-role`: change a user's tenant role.
import {Args} from '@oclif/core'
import {ROLES, type Role, type User} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {openSession} from '../../lib/session.js'

export default class UserSetRole extends MeshCommand {
  static override summary = "Change a user's role in your tenant"
  static override examples = ['<%= config.bin %> user set-role usr_8sk2 admin']
  static override enableJsonFlag = true
  static override args = {
    id: Args.string({description: 'user id (from `mesh user list`)', required: true}),
    role: Args.string({description: 'new role', options: [...ROLES], required: true}),
  }

  async run(): Promise<User> {
    const {args} = await this.parse(UserSetRole)
    const {api} = await openSession()
    const user = await api.updateUser({id: args.id}, {role: args.role as Role})
    this.log(`${user.username} is now ${user.role}.`)
    return user
  }
}
