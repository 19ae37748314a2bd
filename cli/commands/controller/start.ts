/**
 * `mesh controller start`: runs the controller in the foreground until SIGTERM/SIGINT.
 */
import {Flags} from '@oclif/core'
import {defaultControllerDataDir} from '../../../shared/paths.js'
import {MeshCommand} from '../../lib/mesh-command.js'

export default class ControllerStart extends MeshCommand {
  static override summary = 'Run a mesh controller in the foreground'
  static override description = `Serves the REST and WebSocket API on --listen, with its SQLite database in the data dir.
On the first start it creates the tenant "default" and the superuser "admin"; the password is
MESH_ADMIN_PASSWORD when set, else generated, printed once to stderr and saved (mode 0600) in
DATA_DIR/initial-admin-password. Logs are JSON lines on stdout.
For NAT traversal it also serves STUN (UDP, --stun-listen), the endpoint-discovery port (UDP,
--discovery-listen, key in DATA_DIR/discovery.key) and a relay (WebSocket /api/v1/relay on the
--listen port); full netmaps tell nodes where they are.`
  static override examples = [
    '<%= config.bin %> controller start',
    '<%= config.bin %> controller start --listen 0.0.0.0:8080 --public-url https://mesh.example.com',
    '<%= config.bin %> controller start --data-dir /var/lib/mesh-controller --database sqlite:/srv/mesh.db',
    '<%= config.bin %> controller start --listen 198.51.100.1:8080 --stun-alternate 198.51.100.2:3479',
  ]
  static override flags = {
    'data-dir': Flags.string({
      description:
        'directory for the database and the initial admin password (default: MESH_DATA_DIR or the platform default)',
    }),
    listen: Flags.string({
      description: 'HOST:PORT to listen on; port 0 picks a free port',
      default: '127.0.0.1:8080',
    }),
    database: Flags.string({description: 'database URL: sqlite:PATH (default: sqlite:DATA_DIR/mesh.db)'}),
    'public-url': Flags.string({
      description: 'URL nodes use to reach this controller (put into invites); default: from the Host header',
    }),
    'log-level': Flags.string({
      description: 'log level',
      options: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: 'info',
    }),
    'stun-listen': Flags.string({
      description:
        'UDP HOST:PORT of the STUN server (NAT traversal), or "off" (default: the --listen host, port 3478; a free port when the --listen port is 0)',
    }),
    'stun-alternate': Flags.string({
      description:
        'UDP HOST:PORT of the RFC 5780 alternate STUN address: another address and/or port of this host, for mapping and filtering tests',
    }),
    'discovery-listen': Flags.string({
      description:
        'UDP HOST:PORT of the endpoint-discovery port that observes nodes\' public WireGuard mappings, or "off" (default: the --listen host, port 51820; a free port when the --listen port is 0)',
    }),
    'ephemeral-timeout': Flags.integer({
      description: 'seconds an ephemeral node may stay offline before it is removed',
      default: 120,
      min: 1,
    }),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ControllerStart)
    const {main} = await import('../../../controller/main.js')
    await main({
      dataDir: flags['data-dir'] ?? defaultControllerDataDir(),
      listen: flags.listen,
      database: flags.database,
      publicUrl: flags['public-url'],
      logLevel: flags['log-level'],
      ephemeralTimeoutSec: flags['ephemeral-timeout'],
      stunListen: flags['stun-listen'],
      stunAlternate: flags['stun-alternate'],
      discoveryListen: flags['discovery-listen'],
    })
  }
}
