// `mesh policy delete`: remove the tenant's ACL policy (every node may reach every other again).
import {Flags} from '@oclif/core'
import type {RouteReply} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {confirmOrAbort, requireTty} from '../../lib/prompt.js'
import {openSession} from '../../lib/session.js'

export default class PolicyDelete extends MeshCommand {
  static override summary = "Remove the tenant's ACL policy"
  static override description =
    'Without a policy every node of a network may reach every other on every port, as before any policy was set. Audited.'
  static override examples = ['<%= config.bin %> policy delete --yes']
  static override enableJsonFlag = true
  static override flags = {
    yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation', default: false}),
  }

  async run(): Promise<RouteReply<'policy.delete'>> {
    const {flags} = await this.parse(PolicyDelete)
    if (!flags.yes) {
      requireTty(this.interactive, '--yes to confirm')
      await confirmOrAbort('Remove the policy, so that every node may reach every other on every port?')
    }
    const {api} = await openSession()
    const res = await api.deletePolicy()
    this.log('policy removed')
    return res
  }
}
