// `mesh user mfa enable`: turn on TOTP MFA for your account (password accounts).
import {MeshCommand} from '../../../lib/mesh-command.js'
import {type MfaEnableResult, enableMfa, mfaEnableText} from '../../../lib/session.js'

export default class MfaEnable extends MeshCommand {
  static override summary = 'Turn on multi-factor authentication (TOTP) for your account'
  static override description =
    'Shows an otpauth:// URI and a QR code for an authenticator app, then asks for one code to confirm (on a terminal). Without a terminal it stops there: confirm with `mesh user mfa confirm CODE`. MFA is off until confirmed. The ten recovery codes are shown once, at confirmation: keep them somewhere safe.'
  static override examples = ['<%= config.bin %> user mfa enable', '<%= config.bin %> user mfa enable --json']
  static override enableJsonFlag = true

  async run(): Promise<MfaEnableResult> {
    await this.parse(MfaEnable)
    const interactive = this.interactive && !this.jsonEnabled()
    const res = await enableMfa({
      show: async (setup) => {
        if (!this.jsonEnabled()) this.log(await mfaEnableText(setup))
      },
      interactive,
    })
    if (!this.jsonEnabled() && !res.enabled) {
      this.log('MFA is not on yet: confirm it with `mesh user mfa confirm CODE` and a code from the app.')
    }
    if (!this.jsonEnabled() && res.recoveryCodes) {
      this.log('MFA is on. Recovery codes (each works once; shown only now):')
      for (const c of res.recoveryCodes) this.log(`  ${c}`)
    }
    return res
  }
}
