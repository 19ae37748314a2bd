// `mesh user mfa confirm`: finish `mesh user mfa enable` with a first code.
import {Args} from '@oclif/core'
import type {RouteReply} from '../../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../../lib/mesh-command.js'
import {openSession} from '../../../lib/session.js'

export default class MfaConfirm extends MeshCommand {
  static override summary =
    'Confirm TOTP MFA with a code from the authenticator app; prints the recovery codes'
  static override examples = ['<%= config.bin %> user mfa confirm 492039']
  static override enableJsonFlag = true
  static override args = {
    code: Args.string({description: 'the six-digit code the app shows now', required: true}),
  }

  async run(): Promise<RouteReply<'mfa.confirm'>> {
    const {args} = await this.parse(MfaConfirm)
    const {api} = await openSession()
    const res = await api.confirmMfa({code: args.code})
    this.log('MFA is on. Recovery codes (each works once; shown only now):')
    for (const c of res.recoveryCodes) this.log(`  ${c}`)
    return res
  }
}
