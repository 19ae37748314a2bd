// `mesh login`: start a session on a controller and keep its tokens in the CLI's config dir.
import {Flags} from '@oclif/core'
import {isMeshError} from '../../shared/errors.js'
import {cliSetting, configFlag, loadCliFiles, settingFlag} from '../lib/config/index.js'
import {MeshCommand} from '../lib/mesh-command.js'
import {askPassword, askText, readSecretFromStdin, requireTty} from '../lib/prompt.js'
import {formatTime} from '../lib/render/resources.js'
import {type LoginResult, login, loginTarget} from '../lib/session.js'
import {oidcCodeLogin, oidcDeviceLogin} from '../lib/oidc-login.js'

export default class Login extends MeshCommand {
  static override summary = 'Log in to a mesh controller'
  static override description =
    'Asks for the password on a terminal; scripts pipe it in with --password-stdin. With --oidc it logs in through the OpenID Connect provider the controller is configured with instead: a browser opens the printed URL and comes back to a callback on 127.0.0.1 (a random port); with --device (for machines without a browser) it prints a URL and a code to enter on any other device and waits until that is done or the code expires (with --json the URL and code come first as one JSON line on stdout). Accounts with MFA also need a one-time code: --otp CODE, or asked for on a terminal (without one the login fails with MFA_REQUIRED, exit 67). The tokens (a short-lived access token and a refresh token the CLI renews it with) are stored in the config dir (credentials.json, mode 0600). MESH_CONTROLLER and MESH_TOKEN override the stored values. Without --controller, MESH_CONTROLLER or cli.controller in a config file, it logs in to the controller used last.'
  static override examples = [
    '<%= config.bin %> login --controller https://mesh.example.com',
    'printf %s "$MESH_PASSWORD" | <%= config.bin %> login --controller http://127.0.0.1:8080 --user admin --password-stdin',
    'printf %s "$MESH_PASSWORD" | <%= config.bin %> login --user admin --password-stdin --otp 492039',
    '<%= config.bin %> login --controller https://mesh.example.com --oidc',
    '<%= config.bin %> login --oidc --issuer corp --device',
  ]
  static override enableJsonFlag = true
  static override flags = {
    controller: settingFlag.string('cli.controller', {char: 'c'}),
    user: Flags.string({char: 'u', description: 'user name (asked for on a terminal when omitted)'}),
    'password-stdin': Flags.boolean({description: 'read the password from stdin', default: false}),
    otp: Flags.string({
      description:
        'one-time code from the authenticator app, or a recovery code, for accounts with MFA (asked for on a terminal when needed)',
    }),
    oidc: Flags.boolean({
      description: "log in with OpenID Connect (the controller's configured provider) instead of a password",
      default: false,
      exclusive: ['user', 'password-stdin', 'otp'],
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
    config: configFlag(),
  }

  async run(): Promise<LoginResult> {
    const {flags} = await this.parse(Login)
    const configured = cliSetting('cli.controller', flags, await loadCliFiles(flags))
    const controller = await loginTarget(configured.value as string | undefined)
    if (flags.oidc) {
      const opts = {
        controller,
        issuer: flags.issuer,
        // stderr even with --json (oclif's logToStderr keeps quiet then): the person must see it.
        say: (line: string) => process.stderr.write(`${line}\n`),
        // One line before the result, so a script can read it while the login waits.
        json: this.jsonEnabled() ? (v: unknown) => process.stdout.write(`${JSON.stringify(v)}\n`) : undefined,
        openBrowser: flags.browser && this.interactive && !this.jsonEnabled(),
      }
      return this.done(await (flags.device ? oidcDeviceLogin(opts) : oidcCodeLogin(opts)))
    }
    // With --password-stdin, stdin carries the password, so the user name must come as a flag.
    let username = flags.user
    if (username === undefined) {
      requireTty(this.interactive && !flags['password-stdin'], '--user NAME')
      username = await askText('User: ')
    }
    let password: string
    if (flags['password-stdin']) password = await readSecretFromStdin()
    else {
      requireTty(this.interactive, '--password-stdin and pipe the password in')
      password = await askPassword(`Password for ${username}:`)
    }
    let res: LoginResult
    try {
      res = await login({controller, username, password, otp: flags.otp})
    } catch (err) {
      // MFA on and no --otp: ask on a terminal; without one MFA_REQUIRED stands (exit 67).
      if (!isMeshError(err) || err.code !== 'MFA_REQUIRED' || flags.otp !== undefined || !this.interactive) {
        throw err
      }
      const otp = await askText('One-time code (or a recovery code): ')
      res = await login({controller, username, password, otp})
    }
    return this.done(res)
  }

  /** Says who is logged in now (for humans) and returns the result (for --json). */
  private done(res: LoginResult): LoginResult {
    this.log(
      `Logged in to ${res.controller} as ${res.user.username} (tenant ${res.tenant.name}, role ${res.user.role}); the session lasts until ${formatTime(res.refreshExpiresAt ?? res.expiresAt)} unless used.`,
    )
    // The environment beats the file, so a leftover MESH_TOKEN would silently win over this login.
    if (process.env.MESH_TOKEN?.trim())
      this.warn('MESH_TOKEN is set and overrides the token just stored; unset it to use this login')
    return res
  }
}
