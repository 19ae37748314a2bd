// `mesh logout`: revoke the session (access and refresh token) on the controller and forget it here.
import {MeshCommand} from '../lib/mesh-command.js'
import {type LogoutResult, logout} from '../lib/session.js'

export default class Logout extends MeshCommand {
  static override summary =
    'Log out: revoke the session (access and refresh token) on the controller and delete it here'
  static override examples = ['<%= config.bin %> logout']
  static override enableJsonFlag = true

  async run(): Promise<LogoutResult> {
    await this.parse(Logout)
    const res = await logout()
    if (res.warning) this.warn(res.warning)
    if (res.revoked || res.removed) this.log('Logged out.')
    else this.logToStderr('Not logged in.')
    return res
  }
}
