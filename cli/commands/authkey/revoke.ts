// `mesh authkey revoke`: stop an auth key from registering more nodes.
import {Args} from '@oclif/core'
import type {AuthKey} from '../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {openSession} from '../../lib/session.js'

export default class AuthkeyRevoke extends MeshCommand {
  static override summary = 'Revoke an auth key; nodes registered with it stay'
  static override examples = ['<%= config.bin %> authkey revoke key_8fj2k1']
  static override enableJsonFlag = true
  static override args = {
    id: Args.string({description: 'auth key id (from `mesh authkey list`)', required: true}),
  }

  async run(): Promise<AuthKey> {
    const {args} = await this.parse(AuthkeyRevoke)
    const {api} = await openSession()
    const key = await api.revokeAuthKey({id: args.id})
    this.log(`Revoked auth key ${key.id}.`)
    return key
  }
}
