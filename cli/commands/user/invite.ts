// `mesh user invite`: an invite for a person, printed as the one string `mesh signup` needs.
import {Flags} from '@oclif/core'
import {ROLES, type CreateUserInviteResponse, type Role} from '../../../shared/protocol/control-api.js'
import {inviteRequest} from '../../lib/admin.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {formatTime} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class UserInvite extends MeshCommand {
  static override summary = 'Invite a person into your tenant; prints the string to pass to `mesh signup`'
  static override description =
    'Only the invite string goes to stdout, so INV=$(mesh user invite --role member) works. It holds the controller URL and the secret code, is shown once, and lets a person make an account in your tenant with the given role (at most your own). Owners, admins and moderators may invite. List and revoke invites with `mesh user invite list` and `mesh user invite revoke`.'
  static override examples = [
    '<%= config.bin %> user invite --role member',
    '<%= config.bin %> user invite --role moderator --expires 1d --max-uses 5',
    'INV=$(<%= config.bin %> user invite --role guest --unlimited --expires 2w)',
  ]
  static override enableJsonFlag = true
  static override flags = {
    role: Flags.string({
      description: 'tenant role of the accounts made with it (at most yours)',
      options: [...ROLES],
      default: 'member',
    }),
    expires: Flags.string({description: 'how long the invite is valid (30m, 12h, 7d, 2w)', default: '7d'}),
    'max-uses': Flags.integer({
      description: 'how many accounts may be made with it (default 1)',
      min: 1,
      exclusive: ['unlimited'],
    }),
    unlimited: Flags.boolean({
      description: 'no limit on uses (until it expires or is revoked)',
      default: false,
    }),
  }

  async run(): Promise<CreateUserInviteResponse> {
    const {flags} = await this.parse(UserInvite)
    const {expiresIn, maxUses} = inviteRequest(flags)
    const {api} = await openSession()
    const res = await api.createUserInvite({role: flags.role as Role, expiresIn, maxUses})
    this.log(res.inviteString)
    const uses = res.invite.maxUses === null ? 'unlimited uses' : `${res.invite.maxUses} use(s)`
    this.logToStderr(
      `User invite ${res.invite.id} (${res.invite.role}): ${uses}, expires ${formatTime(res.invite.expiresAt)}. Sign up with: mesh signup <string>`,
    )
    return res
  }
}
