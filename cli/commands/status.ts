// `mesh status`: every joined network, its interface and peers, as meshd sees them.
import type {Status} from '../../shared/protocol/local-api.js'
import {DaemonCommand} from '../lib/daemon-command.js'
import {statusText} from '../lib/render/status.js'

export default class StatusCommand extends DaemonCommand {
  static override summary = 'Show networks, interfaces and peers of this node'
  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --json']
  static override enableJsonFlag = true

  async run(): Promise<Status> {
    const {flags} = await this.parse(StatusCommand)
    const st = await this.connect(flags).status()
    this.log(statusText(st))
    return st
  }
}
