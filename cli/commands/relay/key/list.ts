// `mesh relay key list`: the controller's relay keys (prefixes only; keys are never shown again).
import {Flags} from '@oclif/core'
import type {PageOf} from '../../../lib/controller-client.js'
import {MeshCommand} from '../../../lib/mesh-command.js'
import {relayKeysTable} from '../../../lib/render/resources.js'
import {openSession} from '../../../lib/session.js'

export default class RelayKeyList extends MeshCommand {
  static override summary = 'List relay keys (superusers only)'
  static override examples = ['<%= config.bin %> relay key list', '<%= config.bin %> relay key list --json']
  static override enableJsonFlag = true
  static override flags = {
    limit: Flags.integer({description: 'at most this many (default: all)', min: 1}),
  }

  async run(): Promise<PageOf<'relaykey.list'>> {
    const {flags} = await this.parse(RelayKeyList)
    const {api} = await openSession()
    const res = await api.listAll('relaykey.list', {}, {limit: flags.limit})
    this.log(relayKeysTable(res.items))
    return res
  }
}
