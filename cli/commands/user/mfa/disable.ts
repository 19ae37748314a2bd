// `mesh user mfa disable`: turn TOTP MFA off, with a current code or a recovery code.
import {Flags} from '@oclif/core'
import type {RouteReply} from '../../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../../lib/mesh-command.js'
import {askText, requireTty} from '../../../lib/prompt.js'
import {openSession} from '../../../lib/session.js'

export default class MfaDisable extends MeshCommand {
  static override summary = 'Turn off multi-factor authentication for your account'
  static override examples = [
    '<%= config.bin %> user mfa disable',
    '<%= config.bin %> user mfa disable --code 492039',
  ]
  static override enableJsonFlag = true
  static override flags = {
    code: Flags.string({
      description: 'a current code from the app, or a recovery code (asked for on a terminal)',
    }),
  }

  async run(): Promise<RouteReply<'mfa.disable'>> {
    const {flags} = await this.parse(MfaDisable)
    let code = flags.code
    if (code === undefined) {
      requireTty(this.interactive, '--code CODE')
      code = await askText('One-time code or recovery code: ')
    }
    const {api} = await openSession()
    const res = await api.disableMfa({code})
    this.log('MFA is off.')
    return res
  }
}
