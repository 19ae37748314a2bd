/**
 * `mesh relay key create`: a key stand-alone relays of a region register with; run on the
 * controller's host (it is added to DATA_DIR/relay-keys.json, hashed). Printed alone on stdout.
 */
import {Flags} from '@oclif/core'
import {configFlag, loadSection, settingFlag} from '../../../lib/config/index.js'
import {MeshCommand} from '../../../lib/mesh-command.js'

export default class RelayKeyCreate extends MeshCommand {
  static override summary = 'Create a relay key; prints the key, shown only this once'
  static override description = `Run on the controller's host with its data dir: the key's hash is added to
DATA_DIR/relay-keys.json (mode 0600), which the running controller re-reads by itself. Give the
key to \`mesh relay start --relay-key\`; relays started with it are listed under --region.`
  static override examples = ['KEY=$(<%= config.bin %> relay key create --region eu)']
  static override enableJsonFlag = true
  static override flags = {
    region: Flags.string({
      description: 'region name the relays are listed under (a-z, 0-9, -)',
      default: 'default',
    }),
    'data-dir': settingFlag.string('controller.dataDir'),
    config: configFlag(),
  }

  async run(): Promise<{id: string; key: string; region: string; createdAt: string}> {
    const {flags} = await this.parse(RelayKeyCreate)
    const {values: v} = await loadSection('controller', flags)
    const {createRelayKey} = await import('../../../../controller/relay/main.js')
    const r = createRelayKey({dataDir: v.dataDir as string, region: flags.region})
    this.log(r.key)
    this.logToStderr(`Relay key ${r.id} (region ${r.region}). Store it now; it is not shown again.`)
    return r
  }
}
