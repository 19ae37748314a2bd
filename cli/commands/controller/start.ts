/**
 * `mesh controller start`: runs the controller in the foreground until SIGTERM/SIGINT.
 * Settings: flags > MESH_* environment > /etc/mesh/config.yaml (controller section) > defaults.
 */
import {configFlag, loadSection, settingFlag} from '../../lib/config/index.js'
import {MeshCommand} from '../../lib/mesh-command.js'

export default class ControllerStart extends MeshCommand {
  static override summary = 'Run a mesh controller in the foreground'
  static override description = `Serves the REST and WebSocket API on --listen, with its SQLite database in the data dir.
On the first start it creates the tenant "default" and the superuser "admin"; the password is
MESH_ADMIN_PASSWORD when set, else generated, printed once to stderr and saved (mode 0600) in
DATA_DIR/initial-admin-password. Logs are JSON lines on stdout.
For NAT traversal it also serves STUN (UDP, --stun-listen), the endpoint-discovery port (UDP,
--discovery-listen, key in DATA_DIR/discovery.key) and a relay (WebSocket /api/v1/relay on the
--listen port); full netmaps tell nodes where they are. With several replicas on one PostgreSQL,
give each --relay-url (its own address) so that their built-in relays mesh.
People log in with OpenID Connect when --oidc-config names a YAML or JSON file of issuers
(README: OIDC setup).
TOTP secrets are sealed with a secrets key: DATA_DIR/secrets.key (made on the first start on
SQLite), or --secrets-key-file, the same file on every replica on PostgreSQL. Keep it with every
backup: without it, MFA of the restored accounts must be reset (README: Backups and the secrets key).`
  static override examples = [
    '<%= config.bin %> controller start',
    '<%= config.bin %> controller start --listen 0.0.0.0:8080 --public-url https://mesh.example.com',
    '<%= config.bin %> controller start --data-dir /var/lib/mesh-controller --database sqlite:/srv/mesh.db',
    '<%= config.bin %> controller start --listen 198.51.100.1:8080 --stun-alternate 198.51.100.2:3479',
    '<%= config.bin %> controller start --database postgres://mesh@db/mesh --listen 10.0.0.11:8080 --relay-url http://10.0.0.11:8080',
    '<%= config.bin %> controller start --public-url https://mesh.example.com --oidc-config /etc/mesh/oidc.yaml',
  ]
  static override flags = {
    'data-dir': settingFlag.string('controller.dataDir'),
    listen: settingFlag.string('controller.listen'),
    database: settingFlag.string('controller.database'),
    'public-url': settingFlag.string('controller.publicUrl'),
    'log-level': settingFlag.string('controller.logLevel'),
    'stun-listen': settingFlag.string('controller.stunListen'),
    'stun-alternate': settingFlag.string('controller.stunAlternate'),
    'discovery-listen': settingFlag.string('controller.discoveryListen'),
    'ephemeral-timeout': settingFlag.integer('controller.ephemeralTimeout'),
    'trusted-proxy': settingFlag.string('controller.trustedProxy'),
    'relay-url': settingFlag.string('controller.relayUrl'),
    'oidc-config': settingFlag.string('controller.oidcConfig'),
    'secrets-key-file': settingFlag.string('controller.secretsKeyFile'),
    config: configFlag(),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ControllerStart)
    // Flags, then MESH_* variables, then /etc/mesh/config.yaml (or MESH_CONFIG_FILE), then defaults.
    const {values: v} = await loadSection('controller', flags)
    const {main} = await import('../../../controller/main.js')
    const str = (x: unknown): string | undefined => x as string | undefined
    await main({
      dataDir: v.dataDir as string,
      listen: str(v.listen),
      database: str(v.database),
      publicUrl: str(v.publicUrl),
      logLevel: str(v.logLevel),
      ephemeralTimeoutSec: v.ephemeralTimeout as number,
      stunListen: str(v.stunListen),
      stunAlternate: str(v.stunAlternate),
      discoveryListen: str(v.discoveryListen),
      trustedProxy: str(v.trustedProxy),
      relayUrl: str(v.relayUrl),
      oidcConfigFile: str(v.oidcConfig),
      secretsKeyFile: str(v.secretsKeyFile),
    })
  }
}
