// `mesh ping PEER`: echo requests over the mesh, one line per reply with its path and latency.
import {setTimeout as sleep} from 'node:timers/promises'
import {Args, Flags} from '@oclif/core'
import {PING_MAX_COUNT, type PingAttempt, type PingResult} from '../../shared/protocol/local-api.js'
import {DaemonCommand} from '../lib/daemon-command.js'
import {pingLine} from '../lib/render/ping.js'

const INTERVAL_MS = 1000

export default class PingCommand extends DaemonCommand {
  static override summary = 'Ping a peer over the mesh and show the path of each reply'
  static override description = `Like \`tailscale ping\`: meshd sends echo requests to the peer's mesh address (UDP port 41820, inside WireGuard), one a second, and prints each reply with its round trip and whether it came directly (with the endpoint) or through the relay. Exit 0 when at least one reply came, 1 when none did.`
  static override examples = [
    '<%= config.bin %> ping beta',
    '<%= config.bin %> ping 10.20.0.3 --count 3',
    '<%= config.bin %> ping beta --network home --json',
  ]
  static override enableJsonFlag = true
  static override args = {
    peer: Args.string({required: true, description: 'peer name, node id or mesh address'}),
  }
  static override flags = {
    count: Flags.integer({
      char: 'c',
      description: `echo requests to send (1-${PING_MAX_COUNT})`,
      default: 5,
      min: 1,
      max: PING_MAX_COUNT,
    }),
    network: Flags.string({description: 'network name or id [default: the one network that has the peer]'}),
    timeout: Flags.integer({
      description: 'milliseconds to wait for each reply (50-10000)',
      default: 2000,
      min: 50,
      max: 10_000,
    }),
  }

  async run(): Promise<PingResult> {
    const {args, flags} = await this.parse(PingCommand)
    const daemon = this.connect(flags)
    const attempts: PingAttempt[] = []
    // One request per attempt, so each line appears as its reply comes in.
    for (let seq = 1; seq <= flags.count; seq++) {
      const started = Date.now()
      const [a] = await daemon.ping({
        peer: args.peer,
        count: 1,
        timeoutMs: flags.timeout,
        ...(flags.network !== undefined && {network: flags.network}),
      })
      const attempt = {...a!, seq}
      attempts.push(attempt)
      this.log(pingLine(attempt, flags.timeout))
      if (seq < flags.count) await sleep(Math.max(0, INTERVAL_MS - (Date.now() - started)))
    }
    if (attempts.every((a) => a.rttMs === null)) process.exitCode = 1
    return attempts
  }
}
