// `mesh user delete`: remove a user from the tenant, after asking; its nodes go or move.
import {Args, Flags} from '@oclif/core'
import {MeshError} from '../../../shared/errors.js'
import type {DeleteUserResponse} from '../../../shared/protocol/control-api.js'
import {resolveTenantUserId} from '../../lib/admin.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {confirmOrAbort, requireTty} from '../../lib/prompt.js'
import {openSession} from '../../lib/session.js'

export default class UserDelete extends MeshCommand {
  static override summary = 'Delete a user'
  static override description =
    "A user who owns nodes (devices it registered, or that joined with its invites or auth keys) is not deleted unless you say what happens to them: --nodes remove takes them out of their networks (every peer drops them at once), --nodes reassign --to USER gives them to another user of the tenant (they stay connected). Without --nodes the delete is refused (USER_HAS_NODES) and nothing changes, as Headscale refuses to destroy a user that still has nodes: removing someone's devices should never be a side effect."
  static override examples = [
    '<%= config.bin %> user delete alice --yes',
    '<%= config.bin %> user delete alice --nodes remove --yes',
    '<%= config.bin %> user delete alice --nodes reassign --to bob --yes',
  ]
  static override enableJsonFlag = true
  static override args = {
    user: Args.string({description: 'user name or id (from `mesh user list`)', required: true}),
  }
  static override flags = {
    yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation', default: false}),
    nodes: Flags.string({
      description: 'what happens to the nodes the user owns (default: refuse while it owns any)',
      options: ['remove', 'reassign'],
    }),
    to: Flags.string({description: 'with --nodes reassign: the user (name or id) who owns them next'}),
  }

  async run(): Promise<DeleteUserResponse> {
    const {args, flags} = await this.parse(UserDelete)
    if (flags.nodes === 'reassign' && flags.to === undefined) {
      throw new MeshError('INVALID_ARGUMENT', {message: '--nodes reassign needs --to USER'})
    }
    if (flags.to !== undefined && flags.nodes !== 'reassign') {
      throw new MeshError('INVALID_ARGUMENT', {message: '--to goes with --nodes reassign'})
    }
    if (!flags.yes) requireTty(this.interactive, '--yes to confirm')
    const {api} = await openSession()
    const id = await resolveTenantUserId(api, args.user)
    const to = flags.to === undefined ? undefined : await resolveTenantUserId(api, flags.to)
    if (!flags.yes) await confirmOrAbort(`Delete user ${args.user}?`)
    const res = await api.deleteUser(
      {id},
      {...(flags.nodes ? {nodes: flags.nodes as 'remove' | 'reassign'} : {}), ...(to ? {to} : {})},
    )
    const moved = res.reassignedNodes.length
    const removed = res.removedNodes.length
    this.log(
      `Deleted user ${args.user}.` +
        (removed ? ` Removed ${removed} node(s).` : '') +
        (moved ? ` Gave ${moved} node(s) to ${flags.to}.` : ''),
    )
    return res
  }
}
