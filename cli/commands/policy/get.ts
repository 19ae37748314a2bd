// `mesh policy get`: print the tenant's ACL policy as it was written (to edit and `set` again).
import type {PolicyInfo} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {openSession} from '../../lib/session.js'

export default class PolicyGet extends MeshCommand {
  static override summary = "Print the tenant's ACL policy"
  static override description =
    'Prints the document exactly as it was set (comments included), so that `mesh policy get > policy.hujson`, an edit and `mesh policy set policy.hujson --if-version N` round-trip. With no policy, prints nothing and says so on stderr: every node of a network may then reach every other.'
  static override examples = [
    '<%= config.bin %> policy get > policy.hujson',
    '<%= config.bin %> policy get --json',
  ]
  static override enableJsonFlag = true

  async run(): Promise<PolicyInfo> {
    await this.parse(PolicyGet)
    const {api} = await openSession()
    const info = await api.getPolicy()
    if (info.document === null) {
      if (!this.jsonEnabled())
        this.logToStderr('no policy: every node of a network may reach every other (mesh policy set FILE)')
    } else if (!this.jsonEnabled()) {
      process.stdout.write(info.document.endsWith('\n') ? info.document : `${info.document}\n`)
      this.logToStderr(`version ${info.version}, set ${info.updatedAt ?? ''}`)
    }
    return info
  }
}
