// `mesh controller install`: the controller as a systemd service (launchd on macOS) under its own user.
import {Flags} from '@oclif/core'
import {currentEntryProbe, meshEntry} from '../../lib/service/entry.js'
import {
  installController,
  printController,
  type InstallResult,
  type PrintedUnit,
} from '../../lib/service/install.js'
import {installLines} from '../../lib/service/render.js'
import {CONTROLLER_DATA_DIR, CONTROLLER_USER} from '../../lib/service/spec.js'
import {dryRunSystem, hostSystem} from '../../lib/service/system.js'
import {ServiceCommand} from '../../lib/service/service-command.js'

export default class ControllerInstall extends ServiceCommand {
  static override summary = 'Install the controller as a system service and start it'
  static override description = `Creates the system user \`${CONTROLLER_USER}\` (no login shell), writes /etc/systemd/system/mesh-controller.service (on macOS /Library/LaunchDaemons/mesh.controller.plist, running as nobody), then enables and starts it. The unit runs this very mesh as \`mesh controller start --data-dir ${CONTROLLER_DATA_DIR}\` with the flags given here, as that user, with no capabilities unless a port below 1024 is bound (then CAP_NET_BIND_SERVICE only), restarting on failure.
The first start writes the admin password to ${CONTROLLER_DATA_DIR}/initial-admin-password (root only). Running it again changes nothing unless the unit would differ, and then restarts the controller. Where systemd is not PID 1 it prints the unit and fails with SERVICE_MANAGER_UNAVAILABLE.`
  static override examples = [
    'sudo <%= config.bin %> controller install --listen 0.0.0.0:8080 --public-url http://ctl.example:8080',
    '<%= config.bin %> controller install --dry-run',
    '<%= config.bin %> controller install --listen 0.0.0.0:443 --print',
  ]
  static override enableJsonFlag = true
  static override flags = {
    ...ServiceCommand.installFlags,
    listen: Flags.string({description: 'HOST:PORT the controller listens on', default: '127.0.0.1:8080'}),
    'public-url': Flags.string({description: 'URL nodes use to reach the controller (put into invites)'}),
    'stun-listen': Flags.string({
      description: 'UDP HOST:PORT of the STUN server, or "off" (default: the --listen host, port 3478)',
    }),
    'stun-alternate': Flags.string({description: 'UDP HOST:PORT of the RFC 5780 alternate STUN address'}),
    'discovery-listen': Flags.string({
      description:
        'UDP HOST:PORT of the endpoint-discovery port, or "off" (default: the --listen host, port 51820)',
    }),
    'log-level': Flags.string({
      description:
        "the controller's log level; written into the unit only when given [default: from /etc/mesh/config.yaml, else info]",
      options: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    }),
  }

  async run(): Promise<InstallResult | PrintedUnit> {
    const {flags} = await this.parse(ControllerInstall)
    const opts = {
      entry: meshEntry(currentEntryProbe()),
      listen: flags.listen,
      publicUrl: flags['public-url'],
      stunListen: flags['stun-listen'],
      stunAlternate: flags['stun-alternate'],
      discoveryListen: flags['discovery-listen'],
      logLevel: flags['log-level'],
    }
    if (flags.print) return this.printed(printController(hostSystem(), opts))
    const sys = flags['dry-run'] ? dryRunSystem(hostSystem()) : hostSystem()
    const res = await this.orPrintUnit(() =>
      installController(sys, {...opts, noStart: flags['no-start'], dryRun: flags['dry-run']}),
    )
    this.report(installLines(res), res.warnings)
    if (!res.dryRun && res.started)
      this.log(
        `the controller is running as ${res.manager === 'systemd' ? CONTROLLER_USER : 'nobody'} on ${flags.listen}; the admin password of its first start is in ${CONTROLLER_DATA_DIR}/initial-admin-password`,
      )
    return res
  }
}
