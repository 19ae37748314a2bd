// `mesh whoami`: which user, tenant and controller the current token belongs to.
import {MeshCommand} from '../lib/mesh-command.js'
import {renderFields} from '../lib/render/table.js'
import {type WhoamiResult, whoami} from '../lib/session.js'

export default class Whoami extends MeshCommand {
  static override summary = 'Show the logged-in user, tenant and controller'
  static override examples = ['<%= config.bin %> whoami', '<%= config.bin %> whoami --json']
  static override enableJsonFlag = true

  async run(): Promise<WhoamiResult> {
    await this.parse(Whoami)
    const res = await whoami()
    this.log(
      renderFields([
        ['user', res.user.username],
        ['role', res.user.role + (res.user.superuser ? ' (superuser)' : '')],
        ['tenant', res.tenant.name],
        ['controller', res.controller],
        ...(res.identities ?? []).map((i): [string, string] => [
          `oidc ${i.provider}`,
          `groups: ${i.groups.join(', ') || '-'}`,
        ]),
      ]),
    )
    return res
  }
}
