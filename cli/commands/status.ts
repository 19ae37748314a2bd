// `mesh status`: every joined network, its interface and peers, as meshd sees them. On a terminal
// a live dashboard (meshd's status stream); otherwise, or with --json or --once, printed once.
import {Flags} from '@oclif/core'
import type {Status} from '../../shared/protocol/local-api.js'
import {DaemonCommand} from '../lib/daemon-command.js'
import {statusText} from '../lib/render/status.js'

export default class StatusCommand extends DaemonCommand {
  static override summary = 'Show networks, interfaces and peers of this node'
  static override description = `On a terminal this is a live dashboard that follows meshd as things change: each network with its address and controller connection, and per peer its mesh address, path (direct with the endpoint, or relay), latency, last handshake, receive and send rates and whether it is online. Up/down arrows (or k/j) select a peer, Enter shows its details, q quits.

When stdout or stdin is not a terminal, or with --json or --once, the status is printed once and the command exits, so scripts keep working.`
  static override examples = [
    '<%= config.bin %> status',
    '<%= config.bin %> status --once',
    '<%= config.bin %> status --json',
  ]
  static override enableJsonFlag = true
  static override flags = {
    once: Flags.boolean({description: 'print the status once and exit (the default when not on a terminal)'}),
  }

  async run(): Promise<Status | undefined> {
    const {flags} = await this.parse(StatusCommand)
    const client = this.connect(flags)
    const live =
      !flags.once && !this.jsonEnabled() && Boolean(process.stdout.isTTY) && Boolean(process.stdin.isTTY)
    if (live) {
      // Fails fast (DAEMON_UNREACHABLE, exit 69) when there is no meshd to follow.
      await client.status()
      // Ink and React load only here: every other command starts without them.
      const {runLiveStatus} = await import('../lib/tui/live-status.js')
      await runLiveStatus(client)
      return undefined
    }
    const st = await client.status()
    this.log(statusText(st))
    return st
  }
}
