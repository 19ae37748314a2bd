// `mesh network list`: the networks the user can see.
import {Flags} from '@oclif/core'
import type {PageOf} from '../../lib/controller-client.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {networksTable} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class NetworkList extends MeshCommand {
  static override summary = 'List networks'
  static override examples = ['<%= config.bin %> network list', '<%= config.bin %> network list --json']
  static override enableJsonFlag = true
  static override flags = {limit: Flags.integer({description: 'at most this many (default: all)', min: 1})}

  async run(): Promise<PageOf<'network.list'>> {
    const {flags} = await this.parse(NetworkList)
    const {api} = await openSession()
    const res = await api.listAll('network.list', {}, {limit: flags.limit})
    this.log(networksTable(res.items))
    return res
  }
}
