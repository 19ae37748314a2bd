// `mesh daemon uninstall`: stop and remove the service `mesh daemon install` set up; keep the keys.
import {Flags} from '@oclif/core'
import {uninstallDaemon, type UninstallResult} from '../../lib/service/install.js'
import {uninstallLines} from '../../lib/service/render.js'
import {DAEMON_STATE_DIR, MESH_GROUP} from '../../lib/service/spec.js'
import {dryRunSystem, hostSystem} from '../../lib/service/system.js'
import {ServiceCommand} from '../../lib/service/service-command.js'

export default class DaemonUninstall extends ServiceCommand {
  static override summary = 'Stop meshd and remove its system service'
  static override description = `Stops and disables meshd.service, removes the unit \`mesh daemon install\` wrote and, when that install created the group \`${MESH_GROUP}\`, the group too (--keep-group keeps it and its members). On macOS it unloads and removes the plist and keeps the group.
It keeps ${DAEMON_STATE_DIR}, the node's keys and credentials: a later install is the same node again. The WireGuard interfaces stay as they are (wireguard-go outlives meshd by design); run \`mesh down\` before uninstalling to remove them. Nothing installed is not an error.`
  static override examples = [
    'sudo <%= config.bin %> daemon uninstall',
    '<%= config.bin %> daemon uninstall --dry-run',
    'sudo <%= config.bin %> down && sudo <%= config.bin %> daemon uninstall --keep-group',
  ]
  static override enableJsonFlag = true
  static override flags = {
    ...ServiceCommand.uninstallFlags,
    'keep-group': Flags.boolean({
      description: `keep the group \`${MESH_GROUP}\` even when install created it`,
      default: false,
    }),
  }

  async run(): Promise<UninstallResult> {
    const {flags} = await this.parse(DaemonUninstall)
    const sys = flags['dry-run'] ? dryRunSystem(hostSystem()) : hostSystem()
    const res = await uninstallDaemon(sys, {keepGroup: flags['keep-group'], dryRun: flags['dry-run']})
    this.report(uninstallLines(res), res.warnings)
    return res
  }
}
