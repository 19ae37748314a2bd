// `mesh daemon install`: meshd as a systemd service (launchd on macOS), enabled and running.
import {Flags} from '@oclif/core'
import {currentEntryProbe, meshEntry} from '../../lib/service/entry.js'
import {installDaemon, printDaemon, type InstallResult, type PrintedUnit} from '../../lib/service/install.js'
import {installLines} from '../../lib/service/render.js'
import {DAEMON_SOCKET, MESH_GROUP, type WireguardBackend} from '../../lib/service/spec.js'
import {dryRunSystem, hostSystem} from '../../lib/service/system.js'
import {ServiceCommand} from '../../lib/service/service-command.js'

export default class DaemonInstall extends ServiceCommand {
  static override summary = 'Install meshd as a system service and start it'
  static override description = `Writes /etc/systemd/system/meshd.service (on macOS /Library/LaunchDaemons/mesh.meshd.plist), creates the group \`${MESH_GROUP}\` whose members may use meshd's socket (${DAEMON_SOCKET}, mode 0660), then enables and starts the service. The unit runs this very mesh (the Node and script, or the single executable, that ran this command) as \`mesh daemon run\`, as root with CAP_NET_ADMIN only, restarting on failure; a restart leaves wireguard-go and the tunnels up.
Running it again changes nothing unless the unit would differ, and then restarts meshd. Where systemd is not PID 1 (a container) it prints the unit and fails with SERVICE_MANAGER_UNAVAILABLE.
Let a user talk to meshd without sudo: sudo usermod -aG ${MESH_GROUP} USER (effective at their next login).`
  static override examples = [
    'sudo <%= config.bin %> daemon install',
    '<%= config.bin %> daemon install --dry-run',
    '<%= config.bin %> daemon install --print > meshd.service',
    'sudo <%= config.bin %> daemon install --wireguard userspace --no-start --json',
  ]
  static override enableJsonFlag = true
  static override flags = {
    ...ServiceCommand.installFlags,
    wireguard: Flags.string({
      options: ['auto', 'kernel', 'userspace'],
      description:
        'WireGuard backend meshd uses (kernel, userspace or auto); written into the unit only when given [default: daemon.wireguard in /etc/mesh/config.yaml, else auto]',
    }),
    'log-level': Flags.string({
      description:
        "meshd's log level; written into the unit only when given [default: from /etc/mesh/config.yaml, else info]",
      options: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'],
    }),
  }

  async run(): Promise<InstallResult | PrintedUnit> {
    const {flags} = await this.parse(DaemonInstall)
    const opts = {
      entry: meshEntry(currentEntryProbe()),
      wireguard: flags.wireguard as WireguardBackend | undefined,
      logLevel: flags['log-level'],
    }
    if (flags.print) return this.printed(printDaemon(hostSystem(), opts))
    const sys = flags['dry-run'] ? dryRunSystem(hostSystem()) : hostSystem()
    const res = await this.orPrintUnit(() =>
      installDaemon(sys, {...opts, noStart: flags['no-start'], dryRun: flags['dry-run']}),
    )
    this.report(installLines(res), res.warnings)
    if (!res.dryRun && res.started)
      this.log(`meshd is running; root and members of \`${MESH_GROUP}\` may use ${DAEMON_SOCKET}.`)
    return res
  }
}
