// `mesh leave NETWORK`: remove the interface and forget the network's key, credential and netmap.
import {Args} from '@oclif/core'
import type {LeaveResult} from '../../shared/protocol/local-api.js'
import {DaemonCommand} from '../lib/daemon-command.js'

export default class Leave extends DaemonCommand {
  static override summary = "Leave a network: remove its interface and forget this node's key for it"
  static override description =
    'The node stays listed at the controller until an admin removes it (`mesh node remove`).'
  static override examples = ['<%= config.bin %> leave home-lab']
  static override enableJsonFlag = true
  static override args = {network: Args.string({description: 'network name or id', required: true})}

  async run(): Promise<LeaveResult> {
    const {args, flags} = await this.parse(Leave)
    const res = await this.connect(flags).leave({network: args.network})
    this.log(`left ${res.left} (${res.interface} removed)`)
    return res
  }
}
