// `mesh tenant key-expiry [DAYS]`: show or set the tenant's default node key lifetime.
import {Args} from '@oclif/core'
import type {KeyExpirySetting} from '../../../shared/protocol/control-api.js'
import {MeshError} from '../../../shared/errors.js'
import {MeshCommand} from '../../lib/mesh-command.js'
import {openSession} from '../../lib/session.js'

export default class TenantKeyExpiry extends MeshCommand {
  static override summary = 'Show or set how long node keys live in this tenant (days; 0: never)'
  static override description =
    'New keys (a node registering, or rotating its key) get this lifetime; keys made before keep theirs. Tagged nodes never expire. Default 180 days. Setting it is audited.'
  static override examples = [
    '<%= config.bin %> tenant key-expiry',
    '<%= config.bin %> tenant key-expiry 90',
    '<%= config.bin %> tenant key-expiry 0',
  ]
  static override enableJsonFlag = true
  static override args = {
    days: Args.string({description: 'new lifetime in days (0-3650); shows it when omitted'}),
  }

  async run(): Promise<KeyExpirySetting> {
    const {args} = await this.parse(TenantKeyExpiry)
    const {api} = await openSession()
    let res: KeyExpirySetting
    if (args.days === undefined) res = await api.getKeyExpiry()
    else {
      const days = /^\d{1,4}$/.test(args.days) ? Number(args.days) : NaN
      if (!(days <= 3650))
        throw new MeshError('INVALID_ARGUMENT', {
          message: `days "${args.days}" is not a whole number from 0 to 3650`,
        })
      res = await api.setKeyExpiry({days})
    }
    this.log(
      res.days === 0 ? 'Node keys never expire.' : `Node keys expire ${res.days} days after they are made.`,
    )
    return res
  }
}
