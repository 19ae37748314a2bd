// `mesh authkey list`: a network's auth keys (prefixes only; keys are never shown again).
import {Flags} from '@oclif/core'
import type {PageOf} from '../../lib/controller-client.js'
import {networkFlag} from '../../lib/flags.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {authKeysTable} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class AuthkeyList extends MeshCommand {
  static override summary = 'List the auth keys of a network'
  static override examples = ['<%= config.bin %> authkey list --network ci']
  static override enableJsonFlag = true
  static override flags = {
    network: networkFlag(),
    limit: Flags.integer({description: 'at most this many (default: all)', min: 1}),
  }

  async run(): Promise<PageOf<'authkey.list'>> {
    const {flags} = await this.parse(AuthkeyList)
    const {api} = await openSession()
    const res = await api.listAll('authkey.list', {params: {network: flags.network}}, {limit: flags.limit})
    this.log(authKeysTable(res.items))
    return res
  }
}
