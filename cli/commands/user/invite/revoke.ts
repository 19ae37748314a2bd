// `mesh user invite revoke`: stop a user invite from making more accounts.
import {Args} from '@oclif/core'
import type {UserInvite} from '../../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../../lib/mesh-command.js'
import {openSession} from '../../../lib/session.js'

export default class UserInviteRevoke extends MeshCommand {
  static override summary = 'Revoke a user invite; accounts made with it stay'
  static override examples = ['<%= config.bin %> user invite revoke uiv_3k2j9x']
  static override enableJsonFlag = true
  static override args = {
    id: Args.string({description: 'user invite id (from `mesh user invite list`)', required: true}),
  }

  async run(): Promise<UserInvite> {
    const {args} = await this.parse(UserInviteRevoke)
    const {api} = await openSession()
    const invite = await api.revokeUserInvite({id: args.id})
    this.log(`Revoked user invite ${invite.id}.`)
    return invite
  }
}
