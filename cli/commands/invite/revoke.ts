// `mesh invite revoke`: stop an invite from admitting more nodes.
import {Args} from '@oclif/core'
import type {Invite} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {openSession} from '../../lib/session.js'

export default class InviteRevoke extends MeshCommand {
  static override summary = 'Revoke an invite; nodes that joined with it stay'
  static override examples = ['<%= config.bin %> invite revoke inv_3k2j9x']
  static override enableJsonFlag = true
  static override args = {
    id: Args.string({description: 'invite id (from `mesh invite list`)', required: true}),
  }

  async run(): Promise<Invite> {
    const {args} = await this.parse(InviteRevoke)
    const {api} = await openSession()
    const invite = await api.revokeInvite({id: args.id})
    this.log(`Revoked invite ${invite.id}.`)
    return invite
  }
}
