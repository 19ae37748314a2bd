// `mesh signup`: make your account with a user invite and log in as it.
import {Args, Flags} from '@oclif/core'
import {MeshCommand} from '../lib/mesh-command.js'
import {askPassword, askText, readSecretFromStdin, requireTty} from '../lib/prompt.js'
import {formatTime} from '../lib/render/resources.js'
import {type LoginResult, signup} from '../lib/session.js'

export default class Signup extends MeshCommand {
  static override summary = 'Make your account with a user invite and log in'
  static override description =
    'The invite string (from `mesh user invite`) names the controller and the tenant; the account gets the role the invite grants. The password is asked for on a terminal; scripts pipe it in with --password-stdin and give --username. The tokens are stored as `mesh login` stores them.'
  static override examples = [
    '<%= config.bin %> signup meshuser1_eyJj... --username alice',
    'printf %s "$PW" | <%= config.bin %> signup "$INV" --username ci-bot --password-stdin',
  ]
  static override enableJsonFlag = true
  static override args = {
    invite: Args.string({description: 'the user invite string (meshuser1_...)', required: true}),
  }
  static override flags = {
    username: Flags.string({char: 'u', description: 'your user name (asked for on a terminal when omitted)'}),
    'password-stdin': Flags.boolean({description: 'read the new password from stdin', default: false}),
  }

  async run(): Promise<LoginResult> {
    const {args, flags} = await this.parse(Signup)
    // With --password-stdin, stdin carries the password, so the user name must come as a flag.
    let username = flags.username
    if (username === undefined) {
      requireTty(this.interactive && !flags['password-stdin'], '--username NAME')
      username = await askText('User name: ')
    }
    let password: string
    if (flags['password-stdin']) password = await readSecretFromStdin()
    else {
      requireTty(this.interactive, '--password-stdin and pipe the password in')
      password = await askPassword(`Password for ${username} (at least 8 characters):`)
    }
    const res = await signup({invite: args.invite, username, password})
    this.log(
      `Signed up and logged in to ${res.controller} as ${res.user.username} (tenant ${res.tenant.name}, role ${res.user.role}); the session lasts until ${formatTime(res.refreshExpiresAt ?? res.expiresAt)} unless used.`,
    )
    if (process.env.MESH_TOKEN?.trim())
      this.warn('MESH_TOKEN is set and overrides the token just stored; unset it to use this login')
    return res
  }
}
