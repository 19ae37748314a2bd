// `mesh authkey create`: a key for unattended joins (servers, CI), printed alone on stdout.
import {Flags} from '@oclif/core'
import type {CreateAuthKeyResponse} from '../../../shared/protocol/control-api.js'
import {authKeyRequest} from '../../lib/admin.js'
import {networkFlag} from '../../lib/flags.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {formatTime} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class AuthkeyCreate extends MeshCommand {
  static override summary = 'Create an auth key; prints the key, shown only this once'
  static override examples = [
    '<%= config.bin %> authkey create --network ci --reusable --ephemeral --pre-approved --tag tag:ci',
    'KEY=$(<%= config.bin %> authkey create --network servers --expires 1d)',
  ]
  static override enableJsonFlag = true
  static override flags = {
    network: networkFlag(),
    reusable: Flags.boolean({description: 'may register any number of nodes (default: one)', default: false}),
    ephemeral: Flags.boolean({
      description: 'nodes joined with it are removed when they go away',
      default: false,
    }),
    'pre-approved': Flags.boolean({
      description: 'nodes skip approval on approval-policy networks',
      default: false,
    }),
    tag: Flags.string({description: 'tag the nodes get, e.g. tag:ci (repeatable)', multiple: true}),
    expires: Flags.string({description: 'how long the key is valid (30m, 12h, 7d, 2w)', default: '90d'}),
  }

  async run(): Promise<CreateAuthKeyResponse> {
    const {flags} = await this.parse(AuthkeyCreate)
    const body = authKeyRequest(flags)
    const {api} = await openSession()
    const res = await api.createAuthKey({network: flags.network}, body)
    this.log(res.key)
    this.logToStderr(
      `Auth key ${res.authKey.id}: expires ${formatTime(res.authKey.expiresAt)}. Store it now; it is not shown again.`,
    )
    return res
  }
}
