// `mesh session revoke`: end a session at once (its access and refresh tokens).
import {Args} from '@oclif/core'
import type {RouteReply} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {openSession} from '../../lib/session.js'

export default class SessionRevoke extends MeshCommand {
  static override summary = 'Revoke a session: its access and refresh tokens stop working at once'
  static override examples = ['<%= config.bin %> session revoke ses_Jd8v2kq0aZ']
  static override enableJsonFlag = true
  static override args = {
    id: Args.string({description: 'session id (from `mesh session list`)', required: true}),
  }

  async run(): Promise<RouteReply<'session.revoke'>> {
    const {args} = await this.parse(SessionRevoke)
    const {api} = await openSession()
    const res = await api.revokeSession({id: args.id})
    this.log(`Revoked session ${args.id}.`)
    return res
  }
}
