// `mesh daemon run`: meshd in the foreground (systemd runs exactly this); JSON logs on stdout.
// Settings: flags > MESH_* environment > /etc/mesh/config.yaml (daemon section) > defaults.
import {configFlag, loadSection, settingFlag} from '../../lib/config/index.js'
import {MeshCommand} from '../../lib/mesh-command.js'

export default class DaemonRun extends MeshCommand {
  static override summary = 'Run meshd, the node daemon, in the foreground (as root)'
  static override description =
    'meshd owns the WireGuard interfaces and keys of this node and talks to controllers. It stops on SIGTERM/SIGINT and leaves the interfaces up unless --down-on-exit; on the next start it rebuilds them from its state dir.'
  static override examples = [
    'sudo <%= config.bin %> daemon run',
    'sudo ip netns exec ns1 <%= config.bin %> daemon run --socket /run/mesh/ns1.sock --state-dir /var/lib/mesh-ns1 --interface-prefix ns1m',
  ]
  static override flags = {
    socket: settingFlag.string('daemon.socket'),
    'state-dir': settingFlag.string('daemon.stateDir'),
    'interface-prefix': settingFlag.string('daemon.interfacePrefix'),
    wireguard: settingFlag.string('daemon.wireguard'),
    'log-level': settingFlag.string('daemon.logLevel'),
    'down-on-exit': settingFlag.boolean('daemon.downOnExit'),
    config: configFlag(),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(DaemonRun)
    // Flags, then MESH_* variables, then /etc/mesh/config.yaml (or MESH_CONFIG_FILE), then defaults.
    const {values: v} = await loadSection('daemon', flags)
    const {main} = await import('../../../daemon/main.js')
    await main({
      socket: v.socket as string,
      stateDir: v.stateDir as string,
      interfacePrefix: v.interfacePrefix as string,
      wireguard: v.wireguard as 'auto' | 'kernel' | 'userspace',
      logLevel: v.logLevel as string,
      downOnExit: v.downOnExit as boolean,
    })
  }
}
