// `mesh user list`: the users of the tenant.
import {Flags} from '@oclif/core'
import type {PageOf} from '../../lib/controller-client.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {usersTable} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class UserList extends MeshCommand {
  static override summary = 'List the users of your tenant'
  static override examples = ['<%= config.bin %> user list']
  static override enableJsonFlag = true
  static override flags = {limit: Flags.integer({description: 'at most this many (default: all)', min: 1})}

  async run(): Promise<PageOf<'user.list'>> {
    const {flags} = await this.parse(UserList)
    const {api} = await openSession()
    const res = await api.listAll('user.list', {}, {limit: flags.limit})
    this.log(usersTable(res.items))
    return res
  }
}
