/**
 * `mesh relay key create`: a key stand-alone relays of a region register with, made through the
 * controller's admin API (superusers only; stored hashed in its database, so every controller
 * replica accepts it). Printed alone on stdout.
 */
import {Flags} from '@oclif/core'
import type {CreateRelayKeyResponse} from '../../../../shared/protocol/control-api.js'
import {MeshCommand} from '../../../lib/mesh-command.js'
import {openSession} from '../../../lib/session.js'

export default class RelayKeyCreate extends MeshCommand {
  static override summary = 'Create a relay key; prints the key, shown only this once'
  static override description = `Needs a superuser's login (\`mesh login\`). Give the key to
\`mesh relay start --relay-key\`; relays started with it are listed under --region, by every
controller replica.`
  static override examples = [
    'KEY=$(<%= config.bin %> relay key create --region eu)',
    '<%= config.bin %> relay key create --region us-east --name "rack 4" --json',
  ]
  static override enableJsonFlag = true
  static override flags = {
    region: Flags.string({
      description: 'region name the relays are listed under (a-z, 0-9, -)',
      default: 'default',
    }),
    name: Flags.string({description: 'a label for the key (default: the region)'}),
  }

  async run(): Promise<CreateRelayKeyResponse> {
    const {flags} = await this.parse(RelayKeyCreate)
    const {api} = await openSession()
    const res = await api.createRelayKey({
      region: flags.region,
      ...(flags.name === undefined ? {} : {name: flags.name}),
    })
    this.log(res.key)
    this.logToStderr(
      `Relay key ${res.relayKey.id} (region ${res.relayKey.region}). Store it now; it is not shown again.`,
    )
    return res
  }
}
