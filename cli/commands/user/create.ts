// `mesh user create`: add a user to the tenant with a role.
import {Args, Flags} from '@oclif/core'
import {ROLES, type Role, type User} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {askPassword, readSecretFromStdin, requireTty} from '../../lib/prompt.js'
import {openSession} from '../../lib/session.js'

export default class UserCreate extends MeshCommand {
  static override summary = 'Create a user in your tenant'
  static override examples = [
    '<%= config.bin %> user create alice --role admin',
    'printf %s "$PW" | <%= config.bin %> user create ci-bot --role member --password-stdin',
  ]
  static override enableJsonFlag = true
  static override args = {username: Args.string({description: 'user name', required: true})}
  static override flags = {
    role: Flags.string({description: 'tenant role', options: [...ROLES], default: 'member'}),
    'password-stdin': Flags.boolean({description: 'read the new password from stdin', default: false}),
  }

  async run(): Promise<User> {
    const {args, flags} = await this.parse(UserCreate)
    let password: string
    if (flags['password-stdin']) password = await readSecretFromStdin()
    else {
      requireTty(this.interactive, '--password-stdin and pipe the password in')
      password = await askPassword(`Password for ${args.username} (at least 8 characters):`)
    }
    const {api} = await openSession()
    const user = await api.createUser({username: args.username, password, role: flags.role as Role})
    this.log(`Created user ${user.username} (${user.role}), id ${user.id}.`)
    return user
  }
}
