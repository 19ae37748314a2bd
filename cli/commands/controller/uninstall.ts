// `mesh controller uninstall`: stop and remove the controller's service; keep its database.
import {Flags} from '@oclif/core'
import {uninstallController, type UninstallResult} from '../../lib/service/install.js'
import {uninstallLines} from '../../lib/service/render.js'
import {CONTROLLER_DATA_DIR, CONTROLLER_USER} from '../../lib/service/spec.js'
import {dryRunSystem, hostSystem} from '../../lib/service/system.js'
import {ServiceCommand} from '../../lib/service/service-command.js'

export default class ControllerUninstall extends ServiceCommand {
  static override summary = 'Stop the controller and remove its system service'
  static override description = `Stops and disables mesh-controller.service, removes the unit \`mesh controller install\` wrote and, when that install created the user \`${CONTROLLER_USER}\`, the user too (--keep-user keeps it). On macOS it unloads and removes the plist.
It keeps ${CONTROLLER_DATA_DIR}, the database: a later install serves the same networks again (systemd gives the files to the new user). Nothing installed is not an error.`
  static override examples = [
    'sudo <%= config.bin %> controller uninstall',
    '<%= config.bin %> controller uninstall --dry-run --json',
  ]
  static override enableJsonFlag = true
  static override flags = {
    ...ServiceCommand.uninstallFlags,
    'keep-user': Flags.boolean({
      description: `keep the user \`${CONTROLLER_USER}\` even when install created it`,
      default: false,
    }),
  }

  async run(): Promise<UninstallResult> {
    const {flags} = await this.parse(ControllerUninstall)
    const sys = flags['dry-run'] ? dryRunSystem(hostSystem()) : hostSystem()
    const res = await uninstallController(sys, {keepUser: flags['keep-user'], dryRun: flags['dry-run']})
    this.report(uninstallLines(res), res.warnings)
    return res
  }
}
