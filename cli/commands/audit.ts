// `mesh audit`: read the tenant's append-only audit log, or follow it as it is written.
import {setTimeout as sleep} from 'node:timers/promises'
import {Flags, ux} from '@oclif/core'
import {isMeshError, type ErrorCode} from '../../shared/errors.js'
import type {AuditEntry} from '../../shared/protocol/control-api.js'
import {jsonForTerminal} from '../../shared/text.js'
import type {ControllerClient, PageOf} from '../lib/controller-client.js'
import {parseSince} from '../lib/duration.js'
import {MeshCommand} from '../lib/mesh-command.js'
import {auditLine, auditTable} from '../lib/render/resources.js'
import {openSession} from '../lib/session.js'

/** How often --follow asks for new entries. */
const FOLLOW_POLL_MS = 1000
/** Entries --follow shows from before it started, unless --limit says otherwise. */
const FOLLOW_BACKLOG = 10
/** Errors --follow rides out (it says so on stderr once and keeps asking). */
const TRANSIENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'CONTROLLER_UNREACHABLE',
  'RATE_LIMITED',
  'STORAGE_UNAVAILABLE',
  'STORAGE_FULL',
  'INTERNAL',
])

type Query = {since?: string | undefined; actor?: string | undefined; network?: string | undefined}

export default class Audit extends MeshCommand {
  static override summary = 'Show the audit log: who changed what, and when'
  static override description = `Newest first. With --follow, the last entries (--limit, default ${FOLLOW_BACKLOG}) oldest first, then every new entry as it is written, until interrupted; with --json each entry is one line of JSON (JSON Lines), for a SIEM. Following goes by the entries' link numbers in the tenant's hash chain, so no entry is skipped even when several controller replicas write at once.`
  static override examples = [
    '<%= config.bin %> audit --since 1h',
    '<%= config.bin %> audit --network home-lab --actor alice',
    '<%= config.bin %> audit --since 2026-11-01T00:00:00Z --limit 50 --json',
    '<%= config.bin %> audit --follow --json >> /var/log/mesh-audit.jsonl',
  ]
  static override enableJsonFlag = true
  static override flags = {
    since: Flags.string({
      description: 'only entries after this: a duration back from now (1h, 7d) or an RFC 3339 time',
    }),
    actor: Flags.string({description: 'only entries by this user name, user:<id> or node:<id>'}),
    network: Flags.string({char: 'n', description: 'only entries about this network (name or id)'}),
    limit: Flags.integer({description: 'at most this many entries (default: all)', min: 1}),
    follow: Flags.boolean({
      char: 'f',
      description: 'keep printing new entries as they are written (Ctrl-C stops)',
      default: false,
    }),
  }

  async run(): Promise<PageOf<'audit'> | void> {
    const {flags} = await this.parse(Audit)
    const query = {
      since: flags.since === undefined ? undefined : parseSince(flags.since),
      actor: flags.actor,
      network: flags.network,
    }
    const {api} = await openSession()
    if (flags.follow) return this.follow(api, query, flags.limit ?? FOLLOW_BACKLOG)
    const res = await api.listAll('audit', {query}, {limit: flags.limit})
    this.log(auditTable(res.items satisfies AuditEntry[]))
    return res
  }

  /** Prints the backlog, then new links of the chain as they appear; returns only on error. */
  private async follow(api: ControllerClient, query: Query, backlog: number): Promise<void> {
    const json = this.jsonEnabled()
    const print = (e: AuditEntry): void => {
      if (json) ux.stdout(jsonForTerminal(JSON.stringify(e)))
      else this.log(auditLine(e))
    }
    // The head first, unfiltered: following starts after it whatever the filters match.
    const head = (await api.audit({limit: 1})).items[0]?.seq ?? 0
    const recent = (await api.audit({...query, limit: backlog})).items.filter(
      (e) => e.seq === null || e.seq <= head,
    )
    for (const e of recent.reverse()) print(e)
    let after = head
    let failing = false
    for (;;) {
      let more = false
      try {
        const page = await api.audit({...query, afterSeq: after, limit: 100})
        for (const e of page.items) {
          print(e)
          if (e.seq !== null) after = Math.max(after, e.seq)
        }
        more = page.nextCursor !== null
        failing = false
      } catch (err) {
        if (!isMeshError(err) || !TRANSIENT.has(err.code)) throw err
        if (!failing) this.logToStderr(`mesh audit: ${err.message}; still trying`)
        failing = true
      }
      if (!more) await sleep(FOLLOW_POLL_MS)
    }
  }
}
