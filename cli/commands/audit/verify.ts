// `mesh audit verify`: recompute the tenant's audit hash chain and name the first entry that
// does not match (controller/domain/audit.ts says what each verdict means).
import type {AuditVerification} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {openSession} from '../../lib/session.js'

export default class AuditVerify extends MeshCommand {
  static override summary = "Check that the tenant's audit log was not altered"
  static override description = `Every audit entry carries the hash of the entry before it and its own hash over every stored field. The controller recomputes the chain from its first entry and names the first entry that was changed, no longer follows the one before it, or comes after removed entries. Exit 0 when the chain is intact, 1 when it is not.

The chain cannot show entries removed from its end, or a chain rewritten from some point on by someone holding the database: keep the printed head (link number and hash) somewhere else, and check later that the head has the same hash at that number.`
  static override examples = ['<%= config.bin %> audit verify', '<%= config.bin %> audit verify --json']
  static override enableJsonFlag = true

  async run(): Promise<AuditVerification> {
    await this.parse(AuditVerify)
    const {api} = await openSession()
    const v = await api.verifyAudit()
    const before =
      v.unchained > 0 ? ` (${v.unchained} older entries predate the chain and are not covered)` : ''
    if (v.ok) {
      this.log(`audit log intact: ${v.checked} entries verified${before}`)
      if (v.head) this.log(`head: link ${v.head.seq} (entry ${v.head.id}) ${v.head.hash}`)
    } else {
      this.log(`audit log ALTERED: ${v.mismatch?.message ?? 'a link does not match'}`)
      this.log(`${v.checked - 1} entries verified before it${before}`)
      if (v.head) this.log(`last good link: ${v.head.seq} (entry ${v.head.id}) ${v.head.hash}`)
      process.exitCode = 1
    }
    return v
  }
}
