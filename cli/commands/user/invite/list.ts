// `mesh user invite list`: the tenant's user invites (their codes are never shown again).
import {Flags} from '@oclif/core'
import type {PageOf} from '../../../lib/controller-client.js'
import {MeshCommand} from '../../../lib/mesh-command.js'
import {userInvitesTable} from '../../../lib/render/resources.js'
import {openSession} from '../../../lib/session.js'

export default class UserInviteList extends MeshCommand {
  static override summary = 'List the user invites of your tenant'
  static override examples = ['<%= config.bin %> user invite list']
  static override enableJsonFlag = true
  static override flags = {limit: Flags.integer({description: 'at most this many (default: all)', min: 1})}

  async run(): Promise<PageOf<'userinvite.list'>> {
    const {flags} = await this.parse(UserInviteList)
    const {api} = await openSession()
    const res = await api.listAll('userinvite.list', {}, {limit: flags.limit})
    this.log(userInvitesTable(res.items))
    return res
  }
}
