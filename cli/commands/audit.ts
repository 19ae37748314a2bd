// `mesh audit`: read the tenant's append-only audit log.
import {Flags} from '@oclif/core'
import type {AuditEntry} from '../../shared/protocol/control-api.js'
import type {PageOf} from '../lib/controller-client.js'
import {parseSince} from '../lib/duration.js'
import {MeshCommand} from '../lib/mesh-command.js'
import {auditTable} from '../lib/render/resources.js'
import {openSession} from '../lib/session.js'

export default class Audit extends MeshCommand {
  static override summary = 'Show the audit log: who changed what, and when'
  static override examples = [
    '<%= config.bin %> audit --since 1h',
    '<%= config.bin %> audit --network home-lab --actor alice',
    '<%= config.bin %> audit --since 2026-11-01T00:00:00Z --limit 50 --json',
  ]
  static override enableJsonFlag = true
  static override flags = {
    since: Flags.string({
      description: 'only entries after this: a duration back from now (1h, 7d) or an RFC 3339 time',
    }),
    actor: Flags.string({description: 'only entries by this user name, user:<id> or node:<id>'}),
    network: Flags.string({char: 'n', description: 'only entries about this network (name or id)'}),
    limit: Flags.integer({description: 'at most this many entries (default: all)', min: 1}),
  }

  async run(): Promise<PageOf<'audit'>> {
    const {flags} = await this.parse(Audit)
    const query = {
      since: flags.since === undefined ? undefined : parseSince(flags.since),
      actor: flags.actor,
      network: flags.network,
    }
    const {api} = await openSession()
    const res = await api.listAll('audit', {query}, {limit: flags.limit})
    this.log(auditTable(res.items satisfies AuditEntry[]))
    return res
  }
}
