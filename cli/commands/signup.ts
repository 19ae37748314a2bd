// `mesh signup`: make your account with a user invite and log in as it.
import {Args, Flags} from '@oclif/core'
import {MeshCommand} from '../lib/mesh-command.js'
import {oidcCodeLogin, oidcDeviceLogin} from '../lib/oidc-login.js'
import {askPassword, askText, readSecretFromStdin, requireTty} from '../lib/prompt.js'
import {formatTime} from '../lib/render/resources.js'
import {type LoginResult, signup, userInvite} from '../lib/session.js'

export default class Signup extends MeshCommand {
  static override summary = 'Make your account with a user invite and log in'
  static override description =
    "The invite string (from `mesh user invite`) names the controller and the tenant; the account gets the role the invite grants. The password is asked for on a terminal; scripts pipe it in with --password-stdin and give --username. With --oidc the account has no password: it is made from your OpenID Connect identity (its name from the provider's claims) as `mesh login --oidc` would log you in, with a browser or, with --device, a URL and a code; an identity that already has an account is refused (OIDC_IDENTITY_TAKEN) and the invite stays unused. The tokens are stored as `mesh login` stores them."
  static override examples = [
    '<%= config.bin %> signup meshuser1_eyJj... --username alice',
    'printf %s "$PW" | <%= config.bin %> signup "$INV" --username ci-bot --password-stdin',
    '<%= config.bin %> signup "$INV" --oidc',
    '<%= config.bin %> signup "$INV" --oidc --issuer corp --device',
  ]
  static override enableJsonFlag = true
  static override args = {
    invite: Args.string({description: 'the user invite string (meshuser1_...)', required: true}),
  }
  static override flags = {
    username: Flags.string({char: 'u', description: 'your user name (asked for on a terminal when omitted)'}),
    'password-stdin': Flags.boolean({description: 'read the new password from stdin', default: false}),
    oidc: Flags.boolean({
      description:
        "make the account from your OpenID Connect identity (the controller's configured provider) instead of a password",
      default: false,
      exclusive: ['username', 'password-stdin'],
    }),
    issuer: Flags.string({
      description: 'with --oidc: the issuer name as configured on the controller (default: its first)',
      dependsOn: ['oidc'],
    }),
    device: Flags.boolean({
      description:
        'with --oidc: device authorization for machines without a browser (prints a URL and a code)',
      default: false,
      dependsOn: ['oidc'],
    }),
    browser: Flags.boolean({
      description: 'with --oidc on a terminal: open the URL in a browser (--no-browser: only print it)',
      default: true,
      allowNo: true,
    }),
  }

  async run(): Promise<LoginResult> {
    const {args, flags} = await this.parse(Signup)
    if (flags.oidc) {
      const {controller, code} = userInvite(args.invite)
      const opts = {
        controller,
        issuer: flags.issuer,
        invite: code,
        // stderr even with --json: the person must see the URL and code (as `mesh login --oidc`).
        say: (line: string) => process.stderr.write(`${line}\n`),
        json: this.jsonEnabled() ? (v: unknown) => process.stdout.write(`${JSON.stringify(v)}\n`) : undefined,
        openBrowser: flags.browser && this.interactive && !this.jsonEnabled(),
      }
      return this.done(await (flags.device ? oidcDeviceLogin(opts) : oidcCodeLogin(opts)))
    }
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
    return this.done(await signup({invite: args.invite, username, password}))
  }

  private done(res: LoginResult): LoginResult {
    this.log(
      `Signed up and logged in to ${res.controller} as ${res.user.username} (tenant ${res.tenant.name}, role ${res.user.role}); the session lasts until ${formatTime(res.refreshExpiresAt ?? res.expiresAt)} unless used.`,
    )
    if (process.env.MESH_TOKEN?.trim())
      this.warn('MESH_TOKEN is set and overrides the token just stored; unset it to use this login')
    return res
  }
}
