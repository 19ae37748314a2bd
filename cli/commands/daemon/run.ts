// `mesh daemon run`: meshd in the foreground (systemd runs exactly this); JSON logs on stdout.
import {Flags} from '@oclif/core'
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
    socket: Flags.string({
      description: 'unix socket of the local API [default: /run/mesh/meshd.sock]',
      env: 'MESH_SOCKET',
    }),
    'state-dir': Flags.string({
      description: 'keys, credentials, cached netmaps [default: /var/lib/mesh]',
      env: 'MESH_STATE_DIR',
    }),
    'interface-prefix': Flags.string({
      description: 'prefix of the interface names meshd picks',
      default: 'mesh',
    }),
    wireguard: Flags.string({
      description: 'WireGuard backend: kernel module, wireguard-go, or whichever works',
      options: ['auto', 'kernel', 'userspace'],
      default: 'auto',
    }),
    'log-level': Flags.string({
      description: 'log level',
      options: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'],
      default: 'info',
    }),
    'down-on-exit': Flags.boolean({
      description: 'remove the WireGuard interfaces when meshd stops',
      default: false,
    }),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(DaemonRun)
    const {main} = await import('../../../daemon/main.js')
    await main({
      ...(flags.socket !== undefined && {socket: flags.socket}),
      ...(flags['state-dir'] !== undefined && {stateDir: flags['state-dir']}),
      interfacePrefix: flags['interface-prefix'],
      wireguard: flags.wireguard as 'auto' | 'kernel' | 'userspace',
      logLevel: flags['log-level'],
      downOnExit: flags['down-on-exit'],
    })
  }
}
