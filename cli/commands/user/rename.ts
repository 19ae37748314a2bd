// `mesh user rename`: give a user of the tenant another name.
import {Args} from '@oclif/core'
import {type User} from '../../../shared/protocol/control-api.js'
import {resolveTenantUserId} from '../../lib/admin.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {openSession} from '../../lib/session.js'

export default class UserRename extends MeshCommand {
  static override summary = 'Rename a user of your tenant'
  static override description =
    'The user keeps its id, role, nodes and sessions, and logs in with the new name from now on. Refused (USER_NAMED_IN_POLICY) while the ACL policy names the user: change the policy first.'
  static override examples = ['<%= config.bin %> user rename alice alice.smith']
  static override enableJsonFlag = true
  static override args = {
    user: Args.string({description: 'user name or id (from `mesh user list`)', required: true}),
    name: Args.string({description: 'the new user name', required: true}),
  }

  async run(): Promise<User> {
    const {args} = await this.parse(UserRename)
    const {api} = await openSession()
    const user = await api.updateUser({id: await resolveTenantUserId(api, args.user)}, {username: args.name})
    this.log(`${args.user} is now ${user.username}.`)
    return user
  }
}
