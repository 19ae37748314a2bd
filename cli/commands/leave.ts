// `mesh leave NETWORK`: deregister the node at the controller (best effort), remove the interface
// and forget the network's key, credential and netmap.
import {Args} from '@oclif/core'
import type {LeaveResult} from '../../shared/protocol/local-api.js'
import {DaemonCommand} from '../lib/daemon-command.js'

export default class Leave extends DaemonCommand {
  static override summary = 'Leave a network: deregister this node, remove its interface and forget its key'
  static override description =
    'When the controller cannot be reached the node still leaves locally, with a warning: it then stays listed at the controller until an admin removes it (`mesh node remove`).'
  static override examples = ['<%= config.bin %> leave home-lab']
  static override enableJsonFlag = true
  static override args = {network: Args.string({description: 'network name or id', required: true})}

  async run(): Promise<LeaveResult> {
    const {args, flags} = await this.parse(Leave)
    const res = await this.connect(flags).leave({network: args.network})
    this.log(`left ${res.left} (${res.interface} removed)`)
    if (res.deregistered === false) this.warn(res.warning ?? 'the controller was not told about the leave')
    return res
  }
}
