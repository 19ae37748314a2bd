// `mesh network show`: one network in detail.
import {Args} from '@oclif/core'
import type {Network} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {networkDetails} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class NetworkShow extends MeshCommand {
  static override summary = 'Show a network'
  static override examples = [
    '<%= config.bin %> network show home-lab',
    '<%= config.bin %> network show home-lab --json',
  ]
  static override enableJsonFlag = true
  static override args = {network: Args.string({description: 'network name or id', required: true})}

  async run(): Promise<Network> {
    const {args} = await this.parse(NetworkShow)
    const {api} = await openSession()
    const net = await api.showNetwork({network: args.network})
    this.log(networkDetails(net))
    return net
  }
}
