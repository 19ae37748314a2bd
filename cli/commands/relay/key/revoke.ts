// `mesh relay key revoke`: relays using the key are refused at their next heartbeat.
import {Args} from '@oclif/core'
import type {RelayKey} from '../../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../../lib/mesh-command.js'
import {openSession} from '../../../lib/session.js'

export default class RelayKeyRevoke extends MeshCommand {
  static override summary = 'Revoke a relay key; its relays leave the relay list at once'
  static override examples = ['<%= config.bin %> relay key revoke rk_8fj2k1']
  static override enableJsonFlag = true
  static override args = {
    id: Args.string({description: 'relay key id (from `mesh relay key list`)', required: true}),
  }

  async run(): Promise<RelayKey> {
    const {args} = await this.parse(RelayKeyRevoke)
    const {api} = await openSession()
    const key = await api.revokeRelayKey({id: args.id})
    this.log(`Revoked relay key ${key.id}.`)
    return key
  }
}
