// `mesh session list`: your logins (sessions) on the controller, or a user's (admins).
import {Flags} from '@oclif/core'
import type {RouteReply} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {openSession, sessionsTable} from '../../lib/session.js'

export default class SessionList extends MeshCommand {
  static override summary = 'List your sessions (logins) on the controller'
  static override description =
    'Each `mesh login` starts a session: an access token and a refresh token that the CLI renews by itself. Sessions end when they are not used for 30 days, at logout, or with `mesh session revoke`.'
  static override examples = [
    '<%= config.bin %> session list',
    '<%= config.bin %> session list --user usr_8sk2 --json',
  ]
  static override enableJsonFlag = true
  static override flags = {
    user: Flags.string({description: "another user's sessions (id; needs the tenant.manage permission)"}),
  }

  async run(): Promise<RouteReply<'session.list'>> {
    const {flags} = await this.parse(SessionList)
    const {api} = await openSession()
    const res = await api.listSessions(flags.user === undefined ? {} : {user: flags.user})
    this.log(sessionsTable(res.items))
    return res
  }
}
