// `mesh user delete`: remove a user from the tenant, after asking.
import {Args, Flags} from '@oclif/core'
import type {RouteReply} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {confirmOrAbort, requireTty} from '../../lib/prompt.js'
import {openSession} from '../../lib/session.js'

export default class UserDelete extends MeshCommand {
  static override summary = 'Delete a user'
  static override examples = ['<%= config.bin %> user delete usr_8sk2 --yes']
  static override enableJsonFlag = true
  static override args = {id: Args.string({description: 'user id (from `mesh user list`)', required: true})}
  static override flags = {
    yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation', default: false}),
  }

  async run(): Promise<RouteReply<'user.delete'>> {
    const {args, flags} = await this.parse(UserDelete)
    if (!flags.yes) requireTty(this.interactive, '--yes to confirm')
    const {api} = await openSession()
    if (!flags.yes) await confirmOrAbort(`Delete user ${args.id}?`)
    const res = await api.deleteUser({id: args.id})
    this.log(`Deleted user ${args.id}.`)
    return res
  }
}
