/**
 * `mesh relay start`: a stand-alone relay in the foreground until SIGTERM/SIGINT; the same relay
 * code the controller hosts, registered with the controller by heartbeats.
 */
import {Flags} from '@oclif/core'
import {MeshCommand} from '../../lib/mesh-command.js'

export default class RelayStart extends MeshCommand {
  static override summary = 'Run a stand-alone relay in the foreground'
  static override description = `Serves the relay (WebSocket /api/v1/relay) on --listen and registers with the controller,
which lists it in every full netmap (with its region) while it heartbeats. Nodes pick their home
relay by measured latency; relays forward to each other, so nodes homed on different relays still
reach each other. The key comes from \`mesh relay key create\` (a superuser, through any controller
replica; or MESH_RELAY_KEY). Logs are JSON lines on stdout.`
  static override examples = [
    '<%= config.bin %> relay start --controller https://mesh.example.com --relay-key mrelay_... --listen 0.0.0.0:8443 --public-url https://relay-eu.example.com',
    'MESH_RELAY_KEY=mrelay_... <%= config.bin %> relay start --controller http://127.0.0.1:8080 --listen 127.0.0.1:8081',
  ]
  static override flags = {
    controller: Flags.string({description: "the controller's URL", required: true}),
    'relay-key': Flags.string({
      description: 'key from `mesh relay key create`',
      env: 'MESH_RELAY_KEY',
      required: true,
    }),
    listen: Flags.string({
      description: 'HOST:PORT to serve nodes and other relays on',
      default: '127.0.0.1:8081',
    }),
    region: Flags.string({description: "checked against the key's region"}),
    'public-url': Flags.string({description: 'the URL nodes and other relays reach this relay at'}),
    'log-level': Flags.string({description: 'pino log level', default: 'info'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(RelayStart)
    const {main} = await import('../../../controller/relay/main.js')
    await main({
      controller: flags.controller,
      relayKey: flags['relay-key'],
      listen: flags.listen,
      logLevel: flags['log-level'],
      ...(flags.region === undefined ? {} : {region: flags.region}),
      ...(flags['public-url'] === undefined ? {} : {publicUrl: flags['public-url']}),
    })
  }
}
