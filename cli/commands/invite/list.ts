// `mesh invite list`: a network's invites (their codes are never shown again).
import {Flags} from '@oclif/core'
import type {PageOf} from '../../lib/controller-client.js'
import {networkFlag} from '../../lib/flags.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {invitesTable} from '../../lib/render/resources.js'
import {openSession} from '../../lib/session.js'

export default class InviteList extends MeshCommand {
  static override summary = 'List the invites of a network'
  static override examples = ['<%= config.bin %> invite list --network home-lab']
  static override enableJsonFlag = true
  static override flags = {
    network: networkFlag(),
    limit: Flags.integer({description: 'at most this many (default: all)', min: 1}),
  }

  async run(): Promise<PageOf<'invite.list'>> {
    const {flags} = await this.parse(InviteList)
    const {api} = await openSession()
    const res = await api.listAll('invite.list', {params: {network: flags.network}}, {limit: flags.limit})
    this.log(invitesTable(res.items))
    return res
  }
}
