// `mesh tenant create`: a new tenant with its first owner (superusers only).
import {Args, Flags} from '@oclif/core'
import type {RouteReply} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {askPassword, readSecretFromStdin, requireTty} from '../../lib/prompt.js'
import {tenantDetails} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class TenantCreate extends MeshCommand {
  static override summary = 'Create a tenant with its owner (superusers only)'
  static override description =
    "A tenant is a separate set of users and networks; its owner logs in with the new user name and sees nothing of other tenants. Asks for the owner's password on a terminal; scripts pipe it in with --owner-password-stdin."
  static override examples = [
    '<%= config.bin %> tenant create acme --owner alice',
    'printf %s "$PW" | <%= config.bin %> tenant create acme --owner alice --owner-password-stdin',
  ]
  static override enableJsonFlag = true
  static override args = {
    name: Args.string({description: 'tenant name (lowercase letters, digits, dashes)', required: true}),
  }
  static override flags = {
    owner: Flags.string({description: "the owner's user name", required: true}),
    'owner-password-stdin': Flags.boolean({
      description: "read the owner's password from stdin",
      default: false,
    }),
  }

  async run(): Promise<RouteReply<'tenant.create'>> {
    const {args, flags} = await this.parse(TenantCreate)
    let password: string
    if (flags['owner-password-stdin']) password = await readSecretFromStdin()
    else {
      requireTty(this.interactive, '--owner-password-stdin and pipe the password in')
      password = await askPassword(`Password for ${flags.owner} (at least 8 characters):`)
    }
    const {api} = await openSession()
    const res = await api.createTenant({name: args.name, owner: {username: flags.owner, password}})
    this.log(tenantDetails(res))
    return res
  }
}
