// `mesh invite create`: an invite for a network, printed as the one string `mesh join` needs.
import {Flags} from '@oclif/core'
import {ROLES, type CreateInviteResponse} from '../../../shared/protocol/control-api.js'
import {inviteRequest} from '../../lib/admin.js'
import {networkFlag} from '../../lib/flags.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {formatTime} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class InviteCreate extends MeshCommand {
  static override summary = 'Create an invite; prints the string to pass to `mesh join`'
  static override description =
    'Only the join string goes to stdout, so INV=$(mesh invite create --network NAME) works. It holds the controller URL and the secret code, is shown once, and is all a new node needs.'
  static override examples = [
    '<%= config.bin %> invite create --network home-lab',
    '<%= config.bin %> invite create --network home-lab --expires 1d --max-uses 5',
    'INV=$(<%= config.bin %> invite create --network ci --unlimited --expires 2w)',
  ]
  static override enableJsonFlag = true
  static override flags = {
    network: networkFlag(),
    expires: Flags.string({description: 'how long the invite is valid (30m, 12h, 7d, 2w)', default: '7d'}),
    'max-uses': Flags.integer({
      description: 'how many nodes may join with it',
      min: 1,
      exclusive: ['unlimited'],
    }),
    unlimited: Flags.boolean({
      description: 'no limit on uses (until it expires or is revoked)',
      default: false,
    }),
    role: Flags.string({
      description: 'role the joining user gets on the network',
      options: [...ROLES],
      default: 'member',
    }),
  }

  async run(): Promise<CreateInviteResponse> {
    const {flags} = await this.parse(InviteCreate)
    const body = inviteRequest(flags)
    const {api} = await openSession()
    const res = await api.createInvite({network: flags.network}, body)
    this.log(res.joinString)
    const uses = res.invite.maxUses === null ? 'unlimited uses' : `${res.invite.maxUses} use(s)`
    this.logToStderr(
      `Invite ${res.invite.id}: ${uses}, expires ${formatTime(res.invite.expiresAt)}. Join with: mesh join <string>`,
    )
    return res
  }
}
