// `mesh down [NETWORK]`: take interfaces down without leaving; "already down" is success.
import {Args} from '@oclif/core'
import type {DownResult} from '../../shared/protocol/local-api.js'
import {DaemonCommand} from '../lib/daemon-command.js'

export default class Down extends DaemonCommand {
  static override summary = 'Take network interfaces down without leaving the networks'
  static override examples = ['<%= config.bin %> down', '<%= config.bin %> down home-lab']
  static override enableJsonFlag = true
  static override args = {
    network: Args.string({description: 'network name or id; all networks when omitted'}),
  }

  async run(): Promise<DownResult> {
    const {args, flags} = await this.parse(Down)
    const res = await this.connect(flags).down({...(args.network !== undefined && {network: args.network})})
    if (res.changed.length === 0) this.logToStderr('mesh is already down.')
    for (const n of res.changed) this.log(`${n}: down`)
    return res
  }
}
